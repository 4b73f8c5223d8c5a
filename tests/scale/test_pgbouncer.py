"""PgBouncer 1.18 in transaction mode (issue 11 §3), on the shared cluster of tools/cluster.sh.

The contract suite runs through PgBouncer too, as a CI step of its own (``.ci/run``: the
suite's PostgreSQL URL is PgBouncer's, with ``?pooler=transaction``). Here:

- several processes, and bursts of concurrent async calls, through PgBouncer with the switch:
  every call succeeds, and the counter holds exactly the acknowledged increments;
- the same without the switch (a misconfiguration): calls may fail, with typed errors only,
  and every acknowledged increment is in the counter, never one more or one less;
- a prepared statement moved to another server connection is a :class:`PoolerError` naming the
  switch and PgBouncer's address, and the store goes on;
- first use of an empty database, and the upgrade of an older one, by three processes at once
  through PgBouncer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import (
    SCHEMA_HEAD,
    AsyncSessionStore,
    ConfigurationError,
    PoolerError,
    SessionDBError,
    SessionStore,
)

PROCESSES = 4
INCREMENTS = 150
BURSTS = 15  # per process, of BURST concurrent calls
BURST = 20


def switched(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "pooler=transaction"


# -- work run in spawned processes ---------------------------------------------------------------


def _increments(url: str, session_id: str, front: str, report: str, strict: bool) -> None:
    """``INCREMENTS`` increments, one at a time; writes what was acknowledged and the errors
    to ``report``. ``strict``: any error fails the process."""
    acked = 0
    errors: dict[str, int] = {}

    def failed(exc: SessionDBError) -> None:
        if strict:
            raise exc
        name = type(exc).__name__
        errors[name] = errors.get(name, 0) + 1

    if front == "sync":
        with SessionStore(url) as store:
            for _ in range(INCREMENTS):
                try:
                    store.patch_state(session_id, increment={"n": 1})
                except SessionDBError as exc:
                    failed(exc)
                else:
                    acked += 1
    else:

        async def run() -> None:
            nonlocal acked
            async with AsyncSessionStore(url) as store:
                for _ in range(INCREMENTS):
                    try:
                        await store.patch_state(session_id, increment={"n": 1})
                    except SessionDBError as exc:
                        failed(exc)
                    else:
                        acked += 1

        asyncio.run(run())
    Path(report).write_text(json.dumps({"acked": acked, "errors": errors}))


def _bursts(url: str, session_id: str, report: str) -> None:
    """``BURSTS`` bursts of ``BURST`` concurrent calls on one async store: increments (a
    transaction), one-statement patches (none), event appends and reads, all at once on its
    pool."""

    async def run() -> int:
        acked = 0
        async with AsyncSessionStore(url, pool_size=4) as store:
            for b in range(BURSTS):

                async def one(b: int, i: int) -> int:
                    if i % 4 == 0:
                        await store.append_event(session_id, "user", {"b": b, "i": i})
                        return 0
                    if i % 4 == 1:
                        session = await store.get_session("app", "u", session_id)
                        assert session is not None and session.id == session_id
                        return 0
                    if i % 4 == 2:  # one statement, outside a transaction
                        await store.patch_state(session_id, {f"k{i}": b})
                        return 0
                    await store.patch_state(session_id, {f"k{i}": b}, increment={"n": 1})
                    return 1

                acked += sum(await asyncio.gather(*(one(b, i) for i in range(BURST))))
        return acked

    Path(report).write_text(json.dumps({"acked": asyncio.run(run()), "errors": {}}))


def _first_use(url: str, report: str) -> None:
    with SessionStore(url) as store:
        session = store.create_session("app", "u", {"first": True})
        revision = store.current_revision()
    Path(report).write_text(json.dumps({"id": session.id, "revision": revision}))


def _reports(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in paths]


def _counter(url: str, session_id: str) -> tuple[int, int, int]:
    """(counter, version, events) read on the primary, not through PgBouncer."""
    with SessionStore(url) as store:
        session = store.get_session("app", "u", session_id)
        assert session is not None
        return int(session.state.get("n", 0)), session.version, len(store.list_events(session_id))


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("front", ["sync", "async"])
def test_processes_through_pgbouncer_lose_nothing(
    pgbouncer_db: Any, process_pool: Callable[[int], Any], tmp_path: Path, front: str
) -> None:
    url = switched(pgbouncer_db.url)
    with SessionStore(url) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
    reports = [tmp_path / f"{w}.json" for w in range(PROCESSES)]
    args = [(url, sid, front, str(reports[w]), True) for w in range(PROCESSES)]
    assert process_pool(PROCESSES).run(_increments, args) == dict.fromkeys(range(PROCESSES))
    acked = sum(r["acked"] for r in _reports(reports))
    assert acked == PROCESSES * INCREMENTS
    assert _counter(pgbouncer_db.direct_url, sid) == (acked, 1 + acked, 0)


def test_async_bursts_through_pgbouncer_lose_nothing(
    pgbouncer_db: Any, process_pool: Callable[[int], Any], tmp_path: Path
) -> None:
    url = switched(pgbouncer_db.url)
    with SessionStore(url) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
    reports = [tmp_path / f"{w}.json" for w in range(2)]
    args = [(url, sid, str(reports[w])) for w in range(2)]
    assert process_pool(2).run(_bursts, args) == {0: None, 1: None}
    acked = sum(r["acked"] for r in _reports(reports))
    quarter = 2 * BURSTS * BURST // 4  # calls of each kind
    assert acked == quarter
    # every write counted in the version: increments, one-statement patches, appends
    assert _counter(pgbouncer_db.direct_url, sid) == (acked, 1 + 3 * quarter, quarter)


@pytest.mark.parametrize("front", ["sync", "async"])
def test_without_the_switch_no_acknowledged_write_is_lost(
    pgbouncer_db: Any, process_pool: Callable[[int], Any], tmp_path: Path, front: str
) -> None:
    """A misconfiguration: calls may fail, with typed errors, but the counter holds every
    acknowledged increment and nothing else."""
    url = pgbouncer_db.url  # no ?pooler=transaction
    with SessionStore(pgbouncer_db.direct_url) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
    reports = [tmp_path / f"{w}.json" for w in range(PROCESSES)]
    args = [(url, sid, front, str(reports[w]), False) for w in range(PROCESSES)]
    assert process_pool(PROCESSES).run(_increments, args) == dict.fromkeys(range(PROCESSES))
    done = _reports(reports)
    acked = sum(r["acked"] for r in done)
    errors: dict[str, int] = {}
    for r in done:
        for name, count in r["errors"].items():
            errors[name] = errors.get(name, 0) + count
    assert set(errors) <= {"PoolerError", "UnexpectedResultError"}, errors
    assert acked + sum(errors.values()) == PROCESSES * INCREMENTS
    counter, version, _ = _counter(pgbouncer_db.direct_url, sid)
    assert (counter, version) == (acked, 1 + acked), errors


class _Holder:
    """A client of PgBouncer holding a transaction open: the server connection it got (the
    one released last: PgBouncer reuses its idle server connections last in, first out)
    serves nobody else until it ends."""

    def __init__(self, url: str) -> None:
        parsed = sa.make_url(url).set(drivername="postgresql+psycopg")
        self.engine = sa.create_engine(
            parsed, poolclass=sa.NullPool, connect_args={"prepare_threshold": None}
        )
        self.conn = self.engine.connect()
        self.conn.execute(sa.text("SELECT 1"))  # BEGIN, and a server connection for it

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


async def test_a_prepared_statement_moved_away_is_a_pooler_error(
    pgbouncer_db: Any, open_store: Callable[..., Any], front: str
) -> None:
    store = open_store(pgbouncer_db.url, pool_size=1)  # no ?pooler=transaction
    sid = (await store.create_session("app", "u", {"n": 0})).id
    for _ in range(6):  # past psycopg's prepare threshold; asyncpg prepares at once
        await store.patch_state(sid, increment={"n": 1})
    holder = await asyncio.to_thread(_Holder, pgbouncer_db.url)
    try:
        with pytest.raises(PoolerError) as info:
            await store.patch_state(sid, increment={"n": 1})
        # nothing was written, and the connection was discarded: while the server connection
        # that holds its statements is still taken, the next call succeeds on a new one
        assert await store.patch_state(sid, increment={"n": 1}) == 8
    finally:
        await asyncio.to_thread(holder.close)
    message = str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert "prepared statement" in message and "does not exist" in message
    assert "pooler='transaction'" in message and "?pooler=transaction" in message
    host, port = sa.make_url(pgbouncer_db.url).host, sa.make_url(pgbouncer_db.url).port
    assert f"from {host}:{port}" in message
    session = await store.get_session("app", "u", sid)
    assert session.state == {"n": 7}


@pytest.mark.parametrize("revision", ["0001", "0003"])
def test_upgrade_by_three_processes_through_pgbouncer(
    pgbouncer_db: Any, process_pool: Callable[[int], Any], tmp_path: Path, revision: str
) -> None:
    """A database at an older revision, upgraded by three processes at once through
    PgBouncer: one upgrades (one transaction), the others wait for its lock and find the
    schema at head."""
    from sessiondb._migrations import upgrade

    direct = sa.create_engine(
        sa.make_url(pgbouncer_db.direct_url).set(drivername="postgresql+psycopg"),
        poolclass=sa.NullPool,
    )
    try:
        with direct.connect() as conn:
            upgrade(conn, "", revision)
            conn.commit()
    finally:
        direct.dispose()
    url = switched(pgbouncer_db.url)
    reports = [tmp_path / f"{w}.json" for w in range(3)]
    args = [(url, str(reports[w])) for w in range(3)]
    assert process_pool(3).run(_first_use, args) == {0: None, 1: None, 2: None}
    assert [r["revision"] for r in _reports(reports)] == [SCHEMA_HEAD] * 3
    with SessionStore(pgbouncer_db.direct_url) as store:
        assert store.count_sessions() == 3


def test_first_use_by_three_processes_through_pgbouncer(
    pgbouncer_db: Any, process_pool: Callable[[int], Any], tmp_path: Path
) -> None:
    """Three processes make the schema of an empty database at once, through PgBouncer: the
    upgrade is one transaction under a transaction-scoped advisory lock. Three rounds."""
    url = switched(pgbouncer_db.url)
    admin = sa.create_engine(
        sa.make_url(pgbouncer_db.direct_url).set(drivername="postgresql+psycopg"),
        poolclass=sa.NullPool,
    )
    try:
        for round_ in range(3):
            reports = [tmp_path / f"{round_}-{w}.json" for w in range(3)]
            args = [(url, str(reports[w])) for w in range(3)]
            assert process_pool(3).run(_first_use, args) == {0: None, 1: None, 2: None}
            done = _reports(reports)
            assert [r["revision"] for r in done] == [SCHEMA_HEAD] * 3
            with SessionStore(pgbouncer_db.direct_url) as store:
                assert store.count_sessions() == 3
            with admin.begin() as conn:  # empty again, for the next round
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
    finally:
        admin.dispose()
