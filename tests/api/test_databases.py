"""The same cloud on PostgreSQL and MariaDB: migrations, bootstrap, tokens, revocation,
concurrent writers, and a restart that keeps everything."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from pocketstack import config, services
from pocketstack.identity import bootstrap, passwords
from tests import dbservers
from tests.api.conftest import ADMIN_PASSWORD, CATALOG, Cloud, running
from tests.api.test_placement import Placement, _claim, _compute_node

BACKENDS: dict[str, tuple[Callable[[], AbstractContextManager[str]], Callable[[], str | None]]] = {
    "postgresql": (dbservers.postgres, dbservers.missing_postgres),
    "mariadb": (dbservers.mariadb, dbservers.missing_mariadb),
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    start, missing = BACKENDS[request.param]
    reason = missing()
    if reason:
        pytest.skip(reason)
    with start() as url:
        yield url


def _start(state_dir: Path, url: str, fake_hosts: int = 0) -> AbstractContextManager[Cloud]:
    settings = config.Settings(
        state_dir=state_dir, db_url=url, password_hash_rounds=4,
        services=config.KNOWN_SERVICES, fake_hosts=fake_hosts,
    )  # fmt: skip
    runtime = services.build_runtime(settings)
    services.upgrade_schema(runtime)
    services.prepare(runtime)
    bootstrap.bootstrap(runtime, passwords.hash_secret(ADMIN_PASSWORD, 4), True, CATALOG)
    services.close(runtime)
    return running(settings, background=fake_hosts > 0)


def test_cloud_runs_on_the_database(database_url: str, tmp_path: Path) -> None:
    with _start(tmp_path, database_url) as cloud:
        admin = cloud.admin
        project = cloud.create(admin, "project", name="on-server-db", tags=["x"])
        user = cloud.user_with_role(admin, "dbuser", project["id"], "member")
        token = cloud.token("dbuser", "dbuser-pw", project="on-server-db")
        assert cloud.call("GET", f"/v3/projects/{project['id']}", token).status_code == 200

        assert sorted(_create_concurrently(cloud, admin, 12)) == [201] + [409] * 11

        cloud.call("PATCH", f"/v3/users/{user['id']}", admin, {"user": {"enabled": False}})
        assert cloud.call("GET", "/v3/auth/projects", token).status_code == 401

    with _start(tmp_path, database_url) as cloud:
        listed = cloud.call("GET", "/v3/projects?name=on-server-db", admin).json()
        assert [p["tags"] for p in listed["projects"]] == [["x"]]
        assert cloud.call("GET", "/v3/auth/projects", token).status_code == 401


def _create_concurrently(cloud: Cloud, admin: str, count: int) -> list[int]:
    def create(_: int) -> int:
        return int(cloud.call("POST", "/v3/users", admin, {"user": {"name": "racer"}}).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(create, range(count)))


def test_parallel_placement_claims_never_overcommit(database_url: str, tmp_path: Path) -> None:
    with _start(tmp_path, database_url) as cloud:
        placement = Placement(cloud)
        rp = _compute_node(placement, "contended-db", vcpus=5)

        def claim(_: int) -> int:
            return int(placement("PUT", f"/allocations/{uuid.uuid4()}", _claim(rp)).status_code)

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(claim, range(16)))
        assert codes.count(204) == 5 and codes.count(409) == 11
        usages = placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]
        assert usages["VCPU"] == 5
        # The claims that lost left no consumer behind.
        by_type = placement("GET", "/usages?project_id=p1").json()["usages"]
        assert by_type["INSTANCE"] == {"consumer_count": 5, "VCPU": 5}


def _hang_up_everyone_else(url: str) -> None:
    """What a database restart does to a server's pooled connections."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        if url.startswith("postgresql"):
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            )
        else:
            ids = conn.execute(
                text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE id <> CONNECTION_ID() AND db = DATABASE()"
                )
            ).scalars()
            for session_id in list(ids):
                conn.execute(text(f"KILL {int(session_id)}"))
    engine.dispose()


def test_requests_after_the_database_hung_up_on_the_pool(database_url: str, tmp_path: Path) -> None:
    with _start(tmp_path, database_url) as cloud:
        placement = Placement(cloud)
        assert placement("GET", "/resource_providers").status_code == 200
        rp = _compute_node(placement, "after-hangup", vcpus=2)
        _hang_up_everyone_else(database_url)
        for _ in range(3):
            assert placement("GET", "/resource_providers").status_code == 200
        candidates = "/allocation_candidates?resources=VCPU:2"
        assert rp in placement("GET", candidates).json()["provider_summaries"]
        claimed = placement("PUT", f"/allocations/{uuid.uuid4()}", _claim(rp))
        assert claimed.status_code == 204, claimed.text
        assert rp not in placement("GET", candidates).json()["provider_summaries"]


def test_claims_create_update_and_refuse_like_upstream(database_url: str, tmp_path: Path) -> None:
    """The claim statements each database runs (PostgreSQL folds several into one)."""
    with _start(tmp_path, database_url) as cloud:
        placement = Placement(cloud)
        rp = _compute_node(placement, "claims-db", vcpus=4)
        consumer = str(uuid.uuid4())
        assert placement("PUT", f"/allocations/{consumer}", _claim(rp, vcpu=2)).status_code == 204
        again = placement("PUT", f"/allocations/{consumer}", _claim(rp, vcpu=1))
        assert again.status_code == 409
        assert "expected null but got 1" in again.json()["errors"][0]["detail"]
        moved = placement("PUT", f"/allocations/{consumer}", _claim(rp, generation=1, vcpu=3))
        assert moved.status_code == 204, moved.text
        shown = placement("GET", f"/allocations/{consumer}").json()
        assert shown["allocations"][rp]["resources"] == {"VCPU": 3}
        assert shown["consumer_generation"] == 2
        refused = str(uuid.uuid4())
        missing = placement("PUT", f"/allocations/{refused}", _claim(str(uuid.uuid4())))
        assert missing.status_code == 400
        too_much = placement("PUT", f"/allocations/{refused}", _claim(rp, vcpu=2))
        assert too_much.status_code == 409
        off_step = _claim(rp)
        off_step["allocations"][rp]["resources"]["MEMORY_MB"] = 100  # steps of 256
        stepped = placement("PUT", f"/allocations/{refused}", off_step)
        assert stepped.status_code == 409
        assert "violate inventory constraints" in stepped.json()["errors"][0]["detail"]
        no_inventory = _claim(rp)
        no_inventory["allocations"][rp]["resources"]["DISK_GB"] = 1
        assert placement("PUT", f"/allocations/{refused}", no_inventory).status_code == 409
        # No refusal left the consumer behind: it is still new.
        assert placement("GET", f"/allocations/{refused}").json()["allocations"] == {}
        assert placement("PUT", f"/allocations/{refused}", _claim(rp, vcpu=1)).status_code == 204
        usages = placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]
        assert usages["VCPU"] == 4


def test_servers_boot_list_and_go_across_cells_on_the_database(
    database_url: str, tmp_path: Path
) -> None:
    """Cell databases live beside the API database on the same server (created on first
    use); a server boots, lists, acts and goes away there as on SQLite."""
    from tests.api.test_compute import Compute

    with _start(tmp_path, database_url, fake_hosts=2) as cloud:
        compute = Compute(cloud, cloud.admin)
        ids = [compute.active(f"db-{index}")["id"] for index in range(3)]
        listed = compute("GET", "/servers?sort_key=display_name&sort_dir=asc").json()["servers"]
        assert [s["name"] for s in listed] == ["db-0", "db-1", "db-2"]
        with ThreadPoolExecutor(4) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        compute("POST", f"/servers/{ids[0]}/action", {"os-stop": None}).status_code
                    ),
                    range(4),
                )
            )
        assert sorted(codes) == [202, 409, 409, 409], "one stop starts, the others see it"
        compute.wait(ids[0], "SHUTOFF")
        for server_id in ids:
            assert compute("DELETE", f"/servers/{server_id}").status_code == 204
        deadline = time.monotonic() + 10
        while compute("GET", "/servers").json()["servers"]:
            assert time.monotonic() < deadline, "servers still listed after delete"
            time.sleep(0.05)
        for server_id in ids:
            allocations = compute.placement("GET", f"/allocations/{server_id}").json()
            assert allocations["allocations"] == {}
