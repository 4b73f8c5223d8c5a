"""The engines of ``tools/cluster.sh``: its status, and a store's round trip on each of them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from .conftest import (
    SCRIPT,
    ClusterEnv,
    GaleraDatabase,
    PgBouncerDatabase,
    PgDatabase,
    admin_scalar,
    require,
    wait_for,
)


def _port(url: str) -> int:
    port = sa.make_url(url).port
    assert port is not None
    return port


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the script ------------------------------------------------------------------------------------


def test_status_without_a_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    done = _script("status", env={"SESSIONDB_CLUSTER_DIR": str(tmp_path / "none")})
    assert done.returncode == 1
    assert "tools/cluster.sh start" in done.stdout
    assert not (tmp_path / "none").exists()


def test_an_unknown_command_or_part_is_refused(tmp_path: Path) -> None:
    env = {"SESSIONDB_CLUSTER_DIR": str(tmp_path / "c")}
    done = _script("restart", env=env)
    assert done.returncode == 2
    assert "usage:" in done.stderr
    done = _script("start", "mongodb", env=env)
    assert done.returncode == 1
    assert "unknown part 'mongodb'" in done.stderr


def _whole_cluster(cluster_env: ClusterEnv) -> dict[str, str]:
    """The environment that points tools/cluster.sh at the running cluster (skip if not up)."""
    primary, bouncer = cluster_env.pg_primary_url, cluster_env.pgbouncer_url
    require([primary] if primary else [], "PostgreSQL cluster's primary", "pg")
    require(cluster_env.pg_standby_urls, "PostgreSQL cluster's standbys", "pg")
    require([bouncer] if bouncer else [], "PgBouncer", "pgbouncer")
    require(cluster_env.galera_urls, "Galera cluster", "galera")
    assert primary is not None and bouncer is not None
    return {
        "SESSIONDB_CLUSTER_DIR": str(cluster_env.directory),
        "SESSIONDB_CLUSTER_PG_PORT": str(_port(primary)),
        "SESSIONDB_CLUSTER_PGBOUNCER_PORT": str(_port(bouncer)),
        "SESSIONDB_CLUSTER_GALERA_PORT": str(_port(cluster_env.galera_urls[0])),
    }


def test_starting_what_runs_is_a_no_op(cluster_env: ClusterEnv) -> None:
    env = _whole_cluster(cluster_env)
    before = _script("status", env=env)
    assert before.returncode == 0, before.stdout + before.stderr
    done = _script("start", env=env)
    assert done.returncode == 0, done.stderr
    for part in ("pg0 (primary)", "pgbouncer", "galera"):
        assert f"{part} already up" in done.stderr
    after = _script("status", env=env)
    assert after.stdout == before.stdout  # the same servers: the same pids


def test_status_reports_every_part_up(cluster_env: ClusterEnv) -> None:
    env = _whole_cluster(cluster_env)
    primary, bouncer = cluster_env.pg_primary_url, cluster_env.pgbouncer_url
    assert primary is not None and bouncer is not None
    pg, galera = _port(primary), _port(cluster_env.galera_urls[0])
    done = _script("status", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"pg pg0 127.0.0.1:{pg} up (primary, pid ")
    assert [u.split("/")[2].split(":")[1] for u in cluster_env.pg_standby_urls] == [
        str(pg + 1),
        str(pg + 2),
    ]
    assert lines[1].startswith(f"pg pg1 127.0.0.1:{pg + 1} up (standby, pid ")
    assert lines[2].startswith(f"pg pg2 127.0.0.1:{pg + 2} up (standby, pid ")
    assert lines[3].startswith(f"pgbouncer 127.0.0.1:{_port(bouncer)} up (pid ")
    for i in range(3):
        assert lines[4 + i].startswith(
            f"galera galera{i + 1} 127.0.0.1:{galera + i} up (Synced, cluster size 3, pid "
        )
    # the servers behind those lines: a synchronous standby s1 and an async one streaming
    rows = admin_scalar(
        primary,
        "SELECT string_agg(application_name || '=' || sync_state, ',' ORDER BY application_name)"
        " FROM pg_stat_replication WHERE state = 'streaming'",
    )
    assert rows == "s1=sync,s2=async"


# -- PostgreSQL: the primary and its standbys ------------------------------------------------------


def _count(url: str, sql: str, **params: object) -> int:
    """``sql``'s count on ``url``; 0 while the tables have not replicated there yet."""
    try:
        return int(str(admin_scalar(url, sql, **params)))
    except sa.exc.ProgrammingError:  # no such table (yet)
        return 0


def _sessions_on(url: str, session_id: str) -> int:
    return _count(url, "SELECT count(*) FROM sessions WHERE id = :s", s=session_id)


def _events_on(url: str, session_id: str) -> int:
    return _count(url, "SELECT count(*) FROM events WHERE session_id = :s", s=session_id)


async def test_a_store_on_the_primary_is_read_on_every_standby(
    pg_cluster_db: PgDatabase, open_store: Any
) -> None:
    store = open_store(pg_cluster_db.url)
    session = await store.create_session("app", "user", {"n": 1})
    assert await store.patch_state(session.id, increment={"n": 1}) == 2
    await store.append_event(session.id, "user", {"text": "hello"})
    for url in pg_cluster_db.standby_urls:
        assert admin_scalar(url, "SELECT pg_is_in_recovery()") is True
        wait_for(lambda u=url: _events_on(u, session.id) == 1, f"the event on {url}")
        read = await open_store(url).get_session("app", "user", session.id, recent_events=5)
        assert read is not None
        assert read.state == {"n": 2}
        assert [e.content for e in read.events] == [{"text": "hello"}]


# -- PgBouncer -------------------------------------------------------------------------------------


def test_pgbouncer_pools_the_primary_in_transaction_mode(pgbouncer_db: PgBouncerDatabase) -> None:
    bouncer = sa.make_url(pgbouncer_db.url)
    with psycopg.connect(
        host=bouncer.host, port=bouncer.port, user="postgres", dbname="pgbouncer", autocommit=True
    ) as admin:
        config = {row[0]: row[1] for row in admin.execute("SHOW CONFIG").fetchall()}
    assert config["pool_mode"] == "transaction"
    # a table written through the pooler (no prepared statements) is on the primary
    with psycopg.connect(
        host=bouncer.host, port=bouncer.port, user="postgres", dbname=pgbouncer_db.name,
        prepare_threshold=None, autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        port = conn.execute("SELECT inet_server_port()").fetchone()
    assert port == (_port(pgbouncer_db.direct_url),)
    assert admin_scalar(pgbouncer_db.direct_url, "SELECT sum(x) FROM t") == 3


async def test_a_store_through_pgbouncer_round_trips(
    pgbouncer_db: PgBouncerDatabase, open_store: Any
) -> None:
    """The URL that works through a transaction-mode pooler: ``?pooler=transaction``."""
    store = open_store(pgbouncer_db.url + "?pooler=transaction")
    session = await store.create_session("app", "user", {"n": 0})
    for i in range(12):  # past psycopg's prepare threshold (5) and asyncpg's statement cache
        await store.patch_state(session.id, increment={"n": 1})
        await store.append_event(session.id, "user", {"i": i})
    read = await store.get_session("app", "user", session.id, recent_events=12)
    assert read is not None
    assert read.state == {"n": 12}
    assert [e.content for e in read.events] == [{"i": i} for i in range(12)]
    assert _events_on(pgbouncer_db.direct_url, session.id) == 12


# -- Galera ----------------------------------------------------------------------------------------


def _revision(url: str) -> object:
    """The schema revision sessiondb recorded on ``url`` (None until it has replicated)."""
    try:
        return admin_scalar(url, "SELECT max(version_num) FROM sessiondb_alembic_version")
    except sa.exc.ProgrammingError:  # no such table (yet)
        return None


async def test_a_store_on_each_galera_node_is_read_on_the_others(
    galera_db: GaleraDatabase, open_store: Any
) -> None:
    first = open_store(galera_db.url)
    assert await first.count_sessions() == 0  # the schema, made on node 1, replicates
    head = _revision(galera_db.url)
    assert head is not None
    for url in galera_db.urls[1:]:
        wait_for(lambda u=url: _revision(u) == head, f"revision {head} on {url}")
    stores = [first, *(open_store(url) for url in galera_db.urls[1:])]
    ids = []
    for node, store in enumerate(stores):
        session = await store.create_session("app", "user", {"node": node})
        assert await store.patch_state(session.id, increment={"n": 1}) == 2  # the version
        ids.append(session.id)
    for node, session_id in enumerate(ids):
        for url, store in zip(galera_db.urls, stores, strict=True):
            wait_for(lambda u=url, s=session_id: _sessions_on(u, s) == 1, f"{session_id} on {url}")
            read = await store.get_session("app", "user", session_id)
            assert read is not None
            assert read.state == {"node": node, "n": 1}
