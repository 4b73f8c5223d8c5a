"""Read replicas: reads on hot standbys, writes on the primary, read-your-writes.

A private primary with two standbys (tools/cluster.sh, free ports in 5451-5499) that the
tests pause, stop and reconfigure; every test runs through both front ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sessiondb import ConfigurationError, SessionStore
from sessiondb._queries import Stmt
from sessiondb._replicas import reads

from ._pg import Cluster, Front


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster.private()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sync", "async"])
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(cluster: Cluster) -> Iterator[str]:
    with cluster.database() as name:
        yield name


class Stores:
    """The stores of one test, closed at its end."""

    def __init__(self, cluster: Cluster, db: str, front: str) -> None:
        self.cluster, self.db, self.front = cluster, db, front
        self.opened: list[Front] = []
        self.primary_url = cluster.url(db, [cluster.primary_address()])
        self.replica_urls = [cluster.url(db, [cluster.standby_address(i)]) for i in (0, 1)]

    def open(self, **options: Any) -> Front:
        options.setdefault("read_urls", self.replica_urls)
        store = Front(self.front, self.primary_url, **options)
        self.opened.append(store)
        return store


@pytest.fixture
async def stores(cluster: Cluster, db: str, front: str) -> AsyncIterator[Stores]:
    made = Stores(cluster, db, front)
    yield made
    for store in made.opened:
        await store.aclose()


def standby_ports(cluster: Cluster) -> set[int]:
    return {cluster.standby_address(i)[1] for i in (0, 1)}


async def until(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def replayed_everywhere(cluster: Cluster, db: str, session_id: str) -> None:
    for i in (0, 1):
        address = cluster.standby_address(i)

        async def there(a: Any = address) -> bool:
            return cluster.has_session(a, db, session_id)

        await until(there, f"session {session_id} on {address}")


@contextlib.contextmanager
def replay_paused(cluster: Cluster) -> Iterator[None]:
    for i in (0, 1):
        cluster.pause_replay(i)
    try:
        yield
    finally:
        for i in (0, 1):
            cluster.resume_replay(i)


# -- routing ---------------------------------------------------------------------------------------


async def test_reads_go_to_the_replicas_in_turn_and_writes_to_the_primary(
    cluster: Cluster, stores: Stores
) -> None:
    store = stores.open()
    session = await store.create_session("app", "user", {"n": 1})
    await replayed_everywhere(cluster, stores.db, session.id)
    ports = [await store.read_port() for _ in range(4)]
    assert set(ports) == standby_ports(cluster)
    assert ports[0] != ports[1]  # in turn
    assert await store.write_port() == cluster.primary_address()[1]
    assert (await store.get_session("app", "user", session.id)).state == {"n": 1}
    assert await store.patch_state(session.id, increment={"n": 1}) == 2
    assert cluster.read_on_primary(stores.db, session.id) == {"n": 2}


async def test_every_read_operation_is_served_by_a_replica_with_eventual_consistency(
    cluster: Cluster, stores: Stores
) -> None:
    """With the replicas paused, an eventual store's reads show the old data: every read
    operation went to a replica, none to the primary."""
    store = stores.open(read_consistency="eventual")
    old = await store.create_session("app", "user", {"n": 0})
    await store.append_event(old.id, "user", "first")
    await replayed_everywhere(cluster, stores.db, old.id)
    with replay_paused(cluster):
        new = await store.create_session("app", "user", {"n": 1})
        await store.append_event(old.id, "user", "second")
        await store.patch_state(old.id, set={"app:k": "new", "user:k": "new"})
        assert await store.get_session("app", "user", new.id) is None
        assert await store.get_session_by_id(new.id) is None
        assert [s.id for s in await store.list_sessions("app", "user")] == [old.id]
        assert [s.id for s in await store.list_sessions("app", limit=5)] == [old.id]
        assert await store.count_sessions("app") == 1
        assert [e.content for e in await store.list_events(old.id)] == ["first"]
        assert await store.get_app_state("app") == {}
        assert await store.get_user_state("app", "user") == {}
        assert [s.sessions for s in await store.stats()] == [1]
        if stores.front == "sync":
            records = list(store.store.export_records("app"))
        else:
            records = [r async for r in store.store.export_records("app")]
        sessions = [r for r in records if r["type"] == "session"]
        assert [r["id"] for r in sessions] == [old.id]
        assert len(sessions[0]["events"]) == 1
        assert await store.read_port() in standby_ports(cluster)


async def test_a_store_reads_its_own_writes_while_the_replicas_lag(
    cluster: Cluster, stores: Stores
) -> None:
    writer = stores.open()
    reader = stores.open()  # another store (another process, say): it wrote nothing
    base = await writer.create_session("app", "user", {"n": 0})
    await replayed_everywhere(cluster, stores.db, base.id)
    primary = cluster.primary_address()[1]
    with replay_paused(cluster):
        assert await writer.patch_state(base.id, increment={"n": 1}) == 2
        new = await writer.create_session("app", "user", {"k": 1})
        # the writer sees every write it made, from the primary: the replicas are behind
        assert (await writer.get_session("app", "user", new.id)).state == {"k": 1}
        assert (await writer.get_session("app", "user", base.id)).state == {"n": 1}
        assert {s.id for s in await writer.list_sessions("app", "user")} == {base.id, new.id}
        assert await writer.count_sessions("app") == 2
        assert await writer.read_port() == primary
        # an unrelated store reads from a replica, which has not replayed them yet
        assert await reader.get_session("app", "user", new.id) is None
        assert (await reader.get_session("app", "user", base.id)).state == {"n": 0}
        assert await reader.read_port() in standby_ports(cluster)

    # once the replicas have replayed the writes, the writer reads from them again
    async def back_on_replicas() -> bool:
        return await writer.read_port() in standby_ports(cluster)

    await until(back_on_replicas, "the writer's reads to go back to the replicas")
    assert (await writer.get_session("app", "user", new.id)).state == {"k": 1}


async def test_read_your_writes_holds_when_one_read_url_leads_to_several_servers(
    cluster: Cluster, stores: Stores
) -> None:
    """One read URL, two servers behind it (a load balancer; here a multi-host URL): what a
    connection learnt of its server's replay position is not taken for another server's. The
    URL leads to the async standby, which replays; when it stops, the next connection lands on
    the synchronous standby, whose replay is paused: it is asked, found behind, and the read
    goes to the primary."""
    replaying, paused = cluster.standby_address(1), cluster.standby_address(0)
    read_url = cluster.url(stores.db, [replaying, paused])  # any: the first that answers
    store = stores.open(read_urls=[read_url], connect_timeout=2)
    first = await store.create_session("app", "user")
    await replayed_everywhere(cluster, stores.db, first.id)
    cluster.pause_replay(0)
    try:
        session = await store.create_session("app", "user", {"k": 1})

        async def on_the_replica() -> bool:
            found = await store.get_session("app", "user", session.id)
            return found is not None and await store.read_port() == replaying[1]

        await until(on_the_replica, "the read URL's server to replay the write")
        cluster.pg_ctl("pg2", "stop", "-m", "fast", "-w")
        try:
            assert (await store.get_session("app", "user", session.id)).state == {"k": 1}
            assert await store.read_port() == cluster.primary_address()[1]
        finally:
            cluster.start_node("pg2")
    finally:
        cluster.resume_replay(0)


async def test_read_consistency_primary_reads_only_the_primary(
    cluster: Cluster, stores: Stores
) -> None:
    store = stores.open(read_consistency="primary")
    await store.create_session("app", "user")
    assert {await store.read_port() for _ in range(3)} == {cluster.primary_address()[1]}


# -- failures --------------------------------------------------------------------------------------


async def test_an_unreachable_replica_falls_back_to_the_primary_and_is_tried_again_later(
    cluster: Cluster, stores: Stores
) -> None:
    standby = cluster.standby_address(1)  # the asynchronous one: stopping it blocks no commit
    store = stores.open(read_urls=[stores.replica_urls[1]], connect_timeout=2)
    session = await store.create_session("app", "user", {"n": 1})
    await replayed_everywhere(cluster, stores.db, session.id)
    assert await store.read_port() == standby[1]
    cluster.pg_ctl("pg2", "stop", "-m", "fast", "-w")
    try:
        started = time.monotonic()
        assert (await store.get_session("app", "user", session.id)).state == {"n": 1}
        assert await store.read_port() == cluster.primary_address()[1]
        assert time.monotonic() - started < 2 * 2  # no connect timeout waited twice
    finally:
        cluster.start_node("pg2")

    async def back() -> bool:
        return await store.read_port() == standby[1]

    await until(back, "reads to go back to the restarted replica")


async def test_a_replica_that_never_answers_costs_one_connect_timeout(
    cluster: Cluster, stores: Stores
) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)  # accepts into the backlog and never speaks
    try:
        port = silent.getsockname()[1]
        store = stores.open(read_urls=[f"postgresql://postgres@127.0.0.1:{port}/x"],
                            connect_timeout=1)  # fmt: skip
        session = await store.create_session("app", "user")
        durations = []
        for _ in range(3):
            started = time.monotonic()
            assert await store.get_session("app", "user", session.id) is not None
            durations.append(time.monotonic() - started)
        assert durations[0] < 5
        assert max(durations[1:]) < 0.5  # left alone after it failed
    finally:
        silent.close()


SLOW_READ = Stmt(
    "SELECT inet_server_port() FROM (SELECT count(*) FROM sessions) AS held, pg_sleep(2)",
    (),
    columns=("port",),
    writes=False,
)


@reads
def slow_read(cx: Any) -> int:
    """A read that holds a lock on the sessions table for 2 s."""
    return int(cx.one(SLOW_READ, {})[0])


async def test_a_read_cancelled_by_a_recovery_conflict_is_run_again(
    cluster: Cluster, stores: Stores
) -> None:
    standby = cluster.standby_address(0)
    conflicts = "SELECT confl_lock FROM pg_stat_database_conflicts WHERE datname = :d"
    cluster.execute(standby, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    cluster.reload(standby)
    try:
        store = stores.open(read_urls=[stores.replica_urls[0]], read_consistency="eventual")
        session = await store.create_session("app", "user")
        await replayed_everywhere(cluster, stores.db, session.id)
        before = cluster.scalar(standby, conflicts, d=stores.db)
        read = asyncio.ensure_future(store.op_in_background(slow_read))

        async def running() -> bool:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%'"
            return bool(cluster.scalar(standby, sql + " AND pid <> pg_backend_pid()"))

        await until(running, "the slow read on the standby")
        # the primary takes the table's exclusive lock: replaying it cancels the read
        cluster.in_transaction(cluster.primary_address(), "LOCK TABLE sessions", stores.db)
        port = await asyncio.wait_for(read, 30)
        assert port in (standby[1], cluster.primary_address()[1])
        stores.opened.remove(store)
        await store.aclose()  # its connections end, and report their statistics

        async def counted() -> bool:
            return bool(cluster.scalar(standby, conflicts, d=stores.db) == before + 1)

        await until(counted, "the standby to count one lock conflict")
    finally:
        cluster.execute(standby, "ALTER SYSTEM RESET max_standby_streaming_delay")
        cluster.reload(standby)


# -- configuration ---------------------------------------------------------------------------------


def test_read_urls_are_for_postgresql(tmp_path: Any) -> None:
    replica = "postgresql://u@h:5432/db"
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        SessionStore(f"sqlite:///{tmp_path}/x.db", read_urls=[replica])
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        SessionStore("mysql://u@h/db", read_urls=[replica])
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        SessionStore(replica, read_urls=["mysql://u@h/db"])
    with pytest.raises(ConfigurationError, match="list"):
        SessionStore(replica, read_urls=replica)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read_consistency"):
        SessionStore(replica, read_urls=[replica], read_consistency="strong")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read_consistency"):
        SessionStore(replica, read_consistency="strong")  # type: ignore[arg-type]
    SessionStore(replica, read_urls=[]).close()  # none: every read on the primary
