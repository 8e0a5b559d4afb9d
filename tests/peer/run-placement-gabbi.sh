#!/usr/bin/env bash
# Run upstream Placement's gabbi suite against live `pocketstack up` servers
# (one fresh server per gabbit file) and record the results in the
# "Placement (upstream gabbi suite)" section of docs/conformance.md.
#
#   usage: tests/peer/run-placement-gabbi.sh [--only FILE...] [--keep] [--no-doc]
#          (or: make conformance-placement)
#
#   --only FILE...  run only these gabbit files (e.g. inventory.yaml traits);
#                   the doc is then left alone
#   --keep          keep each file's state dir, server log, fixture env and
#                   gabbi-run output (the path is printed at the end)
#   --json PATH     also write the per-test results as JSON
#   --source DIR    run pocketstack from another source tree (e.g. a clean
#                   `git clone` of a commit) instead of this working tree
#
# The work is done by tests/peer/placement_gabbi.py (see its docstring). It
# creates the gabbi venv on first use: $GABBI_VENV (default
# /tmp/pocketstack-gabbi-venv) with gabbi and openstack-placement==16.0.0,
# whose gabbit files are read from there at run time.
#
# Exits 0 when every test passed, 1 when some failed, 2 on set-up errors.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [ -x "$REPO/.venv/bin/python" ]; then
    PYTHON="$REPO/.venv/bin/python"
else
    PYTHON="$(command -v python3)" || { echo "run-placement-gabbi: no python3" >&2; exit 2; }
fi
exec "$PYTHON" "$REPO/tests/peer/placement_gabbi.py" "$@"
