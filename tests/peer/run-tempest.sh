#!/usr/bin/env bash
# Run one service's Tempest API tests against a fresh `pocketstack up` and
# record the results in that service's section of docs/conformance.md.
#
#   usage: tests/peer/run-tempest.sh SERVICE
#          SERVICE: identity | image | compute | network | volume
#          (make conformance = identity, make conformance-image = image)
#
# Steps: start `pocketstack up` in a temporary state dir on a free loopback
# port with a generated admin password; for compute, upload two small public
# raw images (the cloud seeds flavors but no image) and pass them as
# IMAGE_REF / IMAGE_REF_ALT; create the Tempest venv with the
# shared harness's setup.sh if it has no tempest; run the harness
# (run-tempest.sh URL PASSWORD '^tempest\.api\.SERVICE\.'); stop the
# server; rewrite the service's own section of docs/conformance.md ("## Identity
# (Tempest ...)", "## Image (Tempest ...)", ...: from its heading up to the next
# "## " heading), leaving every other section as it is. The section gives date,
# machine, versions, command, counts, every skipped test with its reason
# (grouped by reason) and every failed test with its reason.
#
# Environment (all optional):
#   IDENTITY_EXTENSIONS   passed to the harness (default OS-INHERIT, which pocketstack
#                         implements; set it empty to run the template default)
#   REGEX                 test regex (default '^tempest\.api\.SERVICE\.')
#   CONF_VENV             Tempest venv (default /tmp/conf-venv)
#   SHARED_DIR            the shared dir holding conformance/ (default
#                         <repo>/../shared)
#   CONFORMANCE_DOC       where to write (default <repo>/docs/conformance.md)
#   POCKETSTACK_PASSWORD_HASH_ROUNDS  bcrypt cost for the run (default 4:
#                         Tempest creates and logs in hundreds of users)
#   CONCURRENCY           tempest workers (default 2)
#
# Exits with tempest's exit code (0 when nothing failed), 2 on set-up errors.
set -uo pipefail

SERVICE="${1:-}"
case "$SERVICE" in
    identity) SECTION_TITLE='## Identity (Tempest `tempest.api.identity`)' ;;
    image) SECTION_TITLE='## Image (Tempest `tempest.api.image`)' ;;
    compute) SECTION_TITLE='## Compute (Tempest `tempest.api.compute`)' ;;
    network) SECTION_TITLE='## Networking (Tempest `tempest.api.network`)' ;;
    volume) SECTION_TITLE='## Block storage (Tempest `tempest.api.volume`)' ;;
    *) echo "usage: $0 identity|image|compute|network|volume" >&2; exit 2 ;;
esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="${SHARED_DIR:-$REPO/../shared}"
HARNESS="$SHARED/conformance"
export CONF_VENV="${CONF_VENV:-/tmp/conf-venv}"
REGEX="${REGEX:-^tempest\.api\.$SERVICE\.}"
DOC="${CONFORMANCE_DOC:-$REPO/docs/conformance.md}"
export POCKETSTACK_PASSWORD_HASH_ROUNDS="${POCKETSTACK_PASSWORD_HASH_ROUNDS:-4}"
export IDENTITY_EXTENSIONS="${IDENTITY_EXTENSIONS-OS-INHERIT}"
# Networking serves IPv6 subnets (SLAAC and DHCPv6 modes): let Tempest's IPv6 classes run.
[ "$SERVICE" = network ] && export NETWORK_IPV6="${NETWORK_IPV6:-true}"
# Block storage has snapshots and clones (the harness turns both off by default).
if [ "$SERVICE" = volume ]; then
    export VOLUME_SNAPSHOT="${VOLUME_SNAPSHOT:-true}" VOLUME_CLONE="${VOLUME_CLONE:-true}"
fi

die() { echo "run-tempest $SERVICE: $*" >&2; exit 2; }

[ -x "$HARNESS/run-tempest.sh" ] || die "no harness at $HARNESS (set SHARED_DIR)"
if [ -x "$REPO/.venv/bin/pocketstack" ]; then
    POCKETSTACK="$REPO/.venv/bin/pocketstack"
elif command -v pocketstack >/dev/null; then
    POCKETSTACK="$(command -v pocketstack)"
else
    die "pocketstack is not installed; run 'make install' first"
fi

if [ ! -x "$CONF_VENV/bin/tempest" ]; then
    echo ">> $CONF_VENV has no tempest: running $HARNESS/setup.sh"
    bash "$HARNESS/setup.sh" "$CONF_VENV" || die "setup.sh failed"
fi

# What is about to run (taken before the run: the tree may change while it goes on).
export POCKETSTACK_VERSION="$("$POCKETSTACK" --version 2>/dev/null | tail -n 1)"
export POCKETSTACK_VERSION="${POCKETSTACK_VERSION:-unknown}"
export GIT_REV="$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"

# ------------------------------------------------------------ start the cloud
WORK="$(mktemp -d /tmp/pocketstack-tempest.XXXXXX)"
STATE="$WORK/state"
SERVER_LOG="$WORK/pocketstack-up.log"
RUN_LOG="$WORK/run-tempest.log"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID"
    fi
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
cleanup() {
    stop_server
    rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo ">> pocketstack up on $BASE (state $STATE)"
# The API is what is measured: fake compute hosts and data plane, no built-in images.
"$POCKETSTACK" up --state-dir "$STATE" --bind "127.0.0.1:$PORT" \
    --admin-password "$PASSWORD" --no-clouds-yaml --compute-driver fake --network-driver fake \
    --no-builtin-images \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
ready=0
for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$SERVER_LOG" >&2
        die "pocketstack up exited before serving (log above)"
    fi
    if python3 -c 'import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)' "$BASE/identity/v3"; then
        ready=1
        break
    fi
    sleep 0.1
done
[ "$ready" = 1 ] || { cat "$SERVER_LOG" >&2; die "pocketstack up not ready after 30 s"; }

# ------------------------------------------------------------ compute: images
# A fresh cloud has flavors "1".."5" (m1.*) but no image, and every
# server-creating compute test needs [compute] image_ref (and image_ref_alt,
# which some list-filter tests want different from image_ref). Upload two
# small public raw images through the image API and hand their ids to the
# harness (an explicit IMAGE_REF / IMAGE_REF_ALT in the environment wins).
if { [ "$SERVICE" = compute ] || [ "$SERVICE" = volume ]; } && [ -z "${IMAGE_REF:-}" ]; then
    IMAGES="$(python3 - "$BASE" "$PASSWORD" <<'EOF'
import json, sys, urllib.request

base, password = sys.argv[1], sys.argv[2]


def call(method, url, body=None, headers=None, raw=None):
    headers = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read()
        return resp.headers, (json.loads(text) if text else None)


auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"id": "default"}, "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
headers, doc = call("POST", base + "/identity/v3/auth/tokens", auth)
token = {"X-Auth-Token": headers["X-Subject-Token"]}
image_url = next(
    e["url"] for s in doc["token"]["catalog"] if s["type"] == "image"
    for e in s["endpoints"] if e["interface"] == "public").rstrip("/")
ids = []
for name, size in (("tempest-raw", 1 << 20), ("tempest-raw-alt", 2 << 20)):
    _, image = call("POST", image_url + "/v2/images", {
        "name": name, "disk_format": "raw", "container_format": "bare",
        "visibility": "public"}, token)
    call("PUT", f"{image_url}/v2/images/{image['id']}/file",
         headers={**token, "Content-Type": "application/octet-stream"}, raw=bytes(size))
    _, image = call("GET", f"{image_url}/v2/images/{image['id']}", headers=token)
    if image["status"] != "active":
        sys.exit(f"image {image['id']} is {image['status']} after its upload")
    ids.append(image["id"])
print(" ".join(ids))
EOF
)" || die "could not upload the compute test images"
    export IMAGE_REF="${IMAGES%% *}" IMAGE_REF_ALT="${IMAGES##* }"
    echo ">> uploaded public raw images: image_ref $IMAGE_REF, image_ref_alt $IMAGE_REF_ALT"
fi

# ------------------------------------------------------------ run tempest
export WORKSPACE="/tmp/tempest-ws-pocketstack-$SERVICE-$(date +%Y%m%d-%H%M%S)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
T0="$(date +%s)"
"$HARNESS/run-tempest.sh" "$BASE/identity/v3" "$PASSWORD" "$REGEX" 2>&1 | tee "$RUN_LOG"
TRC="${PIPESTATUS[0]}"
ELAPSED="$(( $(date +%s) - T0 ))"
stop_server

# ------------------------------------------------------------ write the doc
SUBUNIT="$WORKSPACE/results.subunit"
SELECTED="$WORKSPACE/selected-tests.txt"
if [ ! -s "$SUBUNIT" ]; then
    echo "run-tempest $SERVICE: no subunit results in $WORKSPACE (tempest exit $TRC);" \
         "see $RUN_LOG" >&2
    exit "$([ "$TRC" -ne 0 ] && echo "$TRC" || echo 2)"
fi
SUMMARY="$("$CONF_VENV/bin/python" "$HARNESS/summarize.py" "$SUBUNIT" "$SELECTED")"

mkdir -p "$(dirname "$DOC")"
export REPO HARNESS SUBUNIT SELECTED SUMMARY STARTED ELAPSED TRC REGEX WORKSPACE SERVICE SECTION_TITLE
export TEMPEST_VERSION="$("$CONF_VENV/bin/tempest" --version 2>&1 | tail -n 1)"
export MACHINE="$(
    model="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"
    mem="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null)"
    os="$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    echo "$(nproc) vCPU ${model:+($model)}, ${mem:-? GiB} RAM, ${os:-unknown OS}, kernel $(uname -r) $(uname -m)"
)"
"$CONF_VENV/bin/python" - "$DOC" <<'EOF' || die "could not write the report"
"""Render docs/conformance.md from the subunit stream of the run."""
import os
import re
import sys

import subunit
import testtools

sys.path.insert(0, os.environ["HARNESS"])
import summarize  # noqa: E402  (the harness's own parser: same reasons, same counting)

env = os.environ
doc_path = sys.argv[1]


def short(test_id):
    return summarize.strip_attrs(test_id)


selected_by_class = {}
with open(env["SELECTED"]) as handle:
    for line in handle:
        tid = short(line.strip())
        if tid and "." in tid:
            selected_by_class.setdefault(tid.rsplit(".", 1)[0], []).append(tid)

skipped, failed, reported, class_entries = [], [], set(), []


def on_test(test):
    status, tid = test["status"], test["id"]
    if status in ("exists", "inprogress", None):
        return
    details = test["details"]
    fixture = summarize.FIXTURE_RE.match(tid)
    if not fixture:
        reported.add(short(tid))
    if status == "skip":
        reason = details.get("reason")
        text = reason.as_text().strip() if reason is not None else "(no reason given)"
        if fixture:
            class_entries.append(("skip", fixture.group(2), text))
        else:
            skipped.append((short(tid), text))
    elif status not in ("success", "xfail"):
        text = summarize.reason(details) or "(no traceback)"
        if fixture:
            class_entries.append(("fail", fixture.group(2), f"{fixture.group(1)}: {text}"))
        else:
            failed.append((short(tid), text))


with open(env["SUBUNIT"], "rb") as handle:
    stream = subunit.ByteStreamToStreamResult(handle, non_subunit_name="stdout")
    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        stream.run(result)
    finally:
        result.stopTestRun()

# A class whose setUpClass skipped or failed reports once; list its tests.
for kind, cls, text in class_entries:
    tests = [t for t in selected_by_class.get(cls, []) if t not in reported] or [cls]
    target = skipped if kind == "skip" else failed
    target.extend((t, text) for t in tests)

table, totals = [], ""
for line in env["SUMMARY"].splitlines():
    cells = line.split()
    if len(cells) == 5 and all(c.isdigit() for c in cells[1:]):
        table.append(f"| {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {cells[4]} |")
    match = re.match(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", line.strip())
    if match:
        totals = line.strip()

service, title = env["SERVICE"], env["SECTION_TITLE"]
make_target = "conformance" if service == "identity" else f"conformance-{service}"
settings = [
    f"- bcrypt cost: {env['POCKETSTACK_PASSWORD_HASH_ROUNDS']} (`POCKETSTACK_PASSWORD_HASH_ROUNDS`)"
]
if service == "compute":
    # What the rendered tempest.conf really said (microversions come from the
    # preflight's reading of the version document, images from the upload).
    conf, section, values = os.path.join(env["WORKSPACE"], "etc", "tempest.conf"), None, {}
    try:
        with open(conf) as handle:
            for line in handle:
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]")
                elif section == "compute" and " = " in line:
                    key, _, value = line.partition(" = ")
                    values[key] = value
    except OSError:
        pass
    settings.append(
        "- tempest.conf [compute]: "
        + ", ".join(
            f"{key} = {values.get(key, '(unset)')}"
            for key in ("min_microversion", "max_microversion", "image_ref", "image_ref_alt",
                        "flavor_ref", "flavor_ref_alt")
        )
    )
if service == "identity":
    settings.append(
        "- identity extensions enabled in tempest.conf: "
        + (env["IDENTITY_EXTENSIONS"] or "(none)")
    )


def cell(text):
    return " ".join(text.split()).replace("|", "/")


out = [
    title,
    "",
    f"Upstream Tempest's `tempest.api.{service}` tests run against a fresh",
    "`pocketstack up` (SQLite, default settings apart from the bcrypt cost",
    "below) with Tempest's dynamic credentials and the shared harness's tempest.conf.",
    f"Regenerate with `make {make_target}` (`tests/peer/run-tempest.sh {service}`);",
    "each run rewrites this section only, so it shows the last run.",
    "",
    f"- date: {env['STARTED']} (tempest run took {env['ELAPSED']} s)",
    f"- machine: {env['MACHINE']}",
    f"- tempest: {env['TEMPEST_VERSION']}",
    f"- pocketstack: {env['POCKETSTACK_VERSION']} (git {env['GIT_REV']})",
    *settings,
    f"- command: `tests/peer/run-tempest.sh {service}`, which starts the cloud and runs",
    "  `../shared/conformance/run-tempest.sh http://127.0.0.1:PORT/identity/v3 PASSWORD"
    f" '{env['REGEX']}'`",
    f"- tempest exit code: {env['TRC']}",
    "",
    "### Results",
    "",
    "| service | passed | failed | skipped | class errors |",
    "|---|---:|---:|---:|---:|",
    *table,
    "",
    f"**{totals}**" if totals else "",
    "",
    "Counts are per test: when a class's `setUpClass` skips or fails, each of",
    "its tests is counted with that status (harness `summarize.py`).",
    "",
    f"### Skipped tests ({len(skipped)})",
    "",
]
if skipped:
    by_reason = {}
    for test, reason in sorted(skipped):
        by_reason.setdefault(cell(reason), []).append(test)
    out += ["| tests | reason |", "|---:|---|"]
    out += [
        f"| {len(tests)} | {reason} |"
        for reason, tests in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
    ]
    for reason, tests in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        out += ["", f"{reason} ({len(tests)}):", ""]
        out += [f"- `{t}`" for t in tests]
else:
    out.append("None.")
out += ["", f"### Failed tests ({len(failed)})", ""]
if failed:
    out += ["| test | reason |", "|---|---|"]
    out += [f"| `{t}` | {cell(r)} |" for t, r in sorted(failed)]
else:
    out.append("None.")
section = "\n".join(out).rstrip() + "\n"

# Replace this service's section (its heading up to the next top-level heading);
# everything else on the page stays as it is. A page without it gets it appended.
heading = title.split(" (")[0]
try:
    with open(doc_path) as handle:
        lines = handle.read().splitlines(keepends=True)
except FileNotFoundError:
    lines = ["# Conformance\n"]
start = next(
    (
        i
        for i, line in enumerate(lines)
        if line.rstrip() == heading or line.startswith(heading + " (")
    ),
    None,
)
if start is None:
    before, after = "".join(lines).rstrip("\n"), ""
else:
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "# "))),
        len(lines),
    )
    before, after = "".join(lines[:start]).rstrip("\n"), "".join(lines[end:])
text = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
with open(doc_path, "w") as handle:
    handle.write(text)
print(f"wrote {doc_path}: {totals}")
EOF

echo "(run log: $RUN_LOG; tempest workspace: $WORKSPACE)"
exit "$TRC"
