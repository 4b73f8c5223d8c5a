"""Failover on PostgreSQL: the primary dies or is fenced, a standby is promoted, the same store
carries on.

Each test starts a private primary with a synchronous standby (tools/cluster.sh, in a
directory of its own, on free ports in 5451-5499) and stops it by PID at the end. A writer
increments one counter through a multi-host URL with ``target_session_attrs=read-write``,
through both front ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from sessiondb import (
    DatabaseUnavailableError,
    OutcomeUnknownError,
    ReadOnlyDatabaseError,
    SessionDBError,
)

from ._pg import Cluster, Front

CONNECT_TIMEOUT = 2
STATEMENT_TIMEOUT = 5
#: the longest a call may take while the primary is gone: each host's connect timeout (libpq
#: tries them in turn) plus the statement limit, and a margin for a loaded machine
CALL_BOUND = 2 * CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 3
#: how soon after the promotion the store must write again
RECOVERY_BOUND = 10.0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster.private()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sync", "async"])
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def promote(cluster: Cluster, node: str = "pg1") -> None:
    """Promote the synchronous standby, as Patroni would: first clear its own
    synchronous_standby_names (it inherited the primary's, and no standby follows it), so
    that commits on it do not wait for a standby that is not there."""
    standby = cluster.standby_address(0)
    cluster.execute(standby, "ALTER SYSTEM SET synchronous_standby_names = ''")
    cluster.reload(standby)
    cluster.pg_ctl(node, "promote", "-w", "-t", "60")


class Writer:
    """Increments one counter as fast as it can, and keeps the score."""

    def __init__(self, store: Front, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.acknowledged = 0
        self.failures: list[SessionDBError] = []
        self.slowest = 0.0
        self.last_failure = 0.0

    async def step(self) -> bool:
        started = time.monotonic()
        try:
            await self.store.patch_state(self.session_id, increment={"n": 1})
        except SessionDBError as exc:
            self.failures.append(exc)
            self.last_failure = time.monotonic()
            self.slowest = max(self.slowest, self.last_failure - started)
            await asyncio.sleep(0.02)  # as an app would, before its next call
            return False
        self.acknowledged += 1
        self.slowest = max(self.slowest, time.monotonic() - started)
        return True

    @property
    def unknown(self) -> int:
        return sum(isinstance(e, OutcomeUnknownError) for e in self.failures)


async def test_the_store_carries_on_after_the_primary_dies_and_loses_no_acknowledged_write(
    cluster: Cluster, front: str
) -> None:
    with cluster.database() as db:
        primary, standby = cluster.primary_address(), cluster.standby_address(0)
        url = cluster.url(db, [primary, standby], target_session_attrs="read-write")
        store = Front(front, url, connect_timeout=CONNECT_TIMEOUT,
                      statement_timeout=STATEMENT_TIMEOUT)  # fmt: skip
        try:
            session = await store.create_session("app", "user", {"n": 0})
            writer = Writer(store, session.id)
            while writer.acknowledged < 50:
                assert await writer.step(), writer.failures
            promoted = threading.Event()
            promoted_at: list[float] = []

            def detect_and_promote() -> None:
                # the failover manager notices the crash (here: once the app has seen it)
                deadline = time.monotonic() + 30
                while len(writer.failures) < 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                promote(cluster)
                promoted_at.append(time.monotonic())
                promoted.set()

            cluster.kill("pg0")  # kill -9: the primary crashes
            killed_at = time.monotonic()
            manager = threading.Thread(target=detect_and_promote, daemon=True)
            manager.start()
            before = writer.acknowledged
            recovered_at = None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                ok = await writer.step()
                if ok and promoted.is_set() and recovered_at is None:
                    recovered_at = time.monotonic()
                if recovered_at is not None and writer.acknowledged >= before + 50:
                    break
            manager.join(30)
            assert recovered_at is not None, f"no write succeeded after the promotion: " \
                f"{writer.failures[-3:]}"  # fmt: skip
        finally:
            await store.aclose()

        # every acknowledged increment is on the new primary; an increment whose outcome was
        # reported unknown may or may not be there
        stored = cluster.scalar(standby, "SELECT state FROM sessions WHERE id = :s", db,
                                s=session.id)["n"]  # fmt: skip
        assert writer.acknowledged <= stored <= writer.acknowledged + writer.unknown
        # the calls during the switch failed with typed errors, none hung
        assert writer.failures, "the crash went unnoticed"
        assert all(isinstance(e, DatabaseUnavailableError) for e in writer.failures), {
            type(e).__name__ for e in writer.failures
        }
        assert writer.slowest < CALL_BOUND
        assert recovered_at - promoted_at[0] < RECOVERY_BOUND
        # no failure after the store found the new primary
        assert writer.last_failure <= recovered_at
        gap = writer.last_failure - killed_at
        print(f"\n{front}: {len(writer.failures)} failed calls over {gap:.2f} s, "
              f"promotion {promoted_at[0] - killed_at:.2f} s after the crash, "
              f"{writer.acknowledged} acknowledged, {stored} stored")  # fmt: skip


async def test_writes_leave_a_fenced_primary_for_the_promoted_standby(
    cluster: Cluster, front: str
) -> None:
    """The old primary stays up but is fenced (default_transaction_read_only): the store's
    pooled connections to it get SQLSTATE 25006; the store drops them and runs the write once
    more on a new connection, which finds the new primary. Nothing is lost or applied twice."""
    with cluster.database() as db:
        primary, standby = cluster.primary_address(), cluster.standby_address(0)
        url = cluster.url(db, [primary, standby], target_session_attrs="read-write")
        store = Front(front, url, connect_timeout=CONNECT_TIMEOUT)
        try:
            session = await store.create_session("app", "user", {"n": 0})
            for _ in range(5):
                await store.patch_state(session.id, increment={"n": 1})
            assert await store.write_port() == primary[1]  # pooled on the old primary
            cluster.execute(primary, "ALTER SYSTEM SET default_transaction_read_only = on")
            cluster.reload(primary)
            promote(cluster)
            assert await store.patch_state(session.id, increment={"n": 1}) == 7
            assert await store.write_port() == standby[1]
            assert "read-only transaction" in cluster.log("pg0")
        finally:
            await store.aclose()
        stored = cluster.scalar(standby, "SELECT state FROM sessions WHERE id = :s", db,
                                s=session.id)  # fmt: skip
        assert stored == {"n": 6}


async def test_a_url_without_target_session_attrs_on_a_demoted_primary_fails_typed(
    cluster: Cluster, front: str
) -> None:
    """A URL that names only the old primary, now fenced: every write raises
    ReadOnlyDatabaseError at once (after one new connection), never loops; reads still work."""
    with cluster.database() as db:
        primary = cluster.primary_address()
        store = Front(front, cluster.url(db, [primary]), connect_timeout=CONNECT_TIMEOUT)
        try:
            session = await store.create_session("app", "user", {"n": 0})
            cluster.execute(primary, "ALTER SYSTEM SET default_transaction_read_only = on")
            cluster.reload(primary)
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(ReadOnlyDatabaseError) as info:
                    await store.patch_state(session.id, increment={"n": 1})
                assert time.monotonic() - started < CONNECT_TIMEOUT
                assert f"127.0.0.1:{primary[1]}" in str(info.value)
            assert (await store.get_session("app", "user", session.id)).state == {"n": 0}
        finally:
            await store.aclose()
            cluster.execute(primary, "ALTER SYSTEM RESET default_transaction_read_only")
            cluster.reload(primary)
