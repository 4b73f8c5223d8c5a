"""MariaDB Galera, multi-primary (issue 11 §4), on the 3-node cluster of ``tools/cluster.sh``.

- Certification conflicts: 8 processes x 200 ``patch_state`` increments of one counter, spread
  over the three nodes, end at exactly 1,600; 8 x 100 ``append_event`` end with seq 1..800, no
  gap and no duplicate; the same with async tasks on the three nodes. Each process reports how
  many of its calls were run again (the ``sessiondb`` logger's DEBUG records).
- A conflict provoked deterministically (the store's transaction waits on node 1 for a lock
  the test holds there, while node 2 commits a write to the same session, which aborts it):
  run again transparently, applied once; with ``conflict_retries`` used up, ``ConflictError``.
- Concurrent first use of a new database from three processes, one per node, sync and async,
  three times: every process succeeds, the schema is at head, every table has a primary key.

Every test has a database of its own on the cluster (the ``galera_db`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sessiondb import (
    AsyncSessionStore,
    ConflictError,
    SchemaError,
    SessionStore,
    StaleSessionError,
)
from sessiondb._migrations import HEAD
from sessiondb._migrations import lock as schema_lock
from sessiondb._schema import lock_table_name, version_table_name
from sessiondb._urls import resolve_url

from .conftest import GaleraDatabase

WRITERS = 8
INCREMENTS = 200
APPENDS = 100
#: A commit returns once certified, before the other nodes have applied it: the checks read
#: with wsrep_sync_wait, which first waits for the node to apply what was certified before.
SYNCED: dict[str, Any] = {
    "engine_options": {"connect_args": {"init_command": "SET SESSION wsrep_sync_wait = 1"}}
}
#: The hot-row tests' budget. Alone, no call of theirs needed more than 11 attempts (the
#: default is 30, docs/deploy.md); under `pytest -n 2` their 8 processes share 2 cores with the
#: three nodes and another test, transactions stretch, and a call once used up 31.
HOT_ROW = {"conflict_retries": 100}


class Retries(logging.Handler):
    """Counts the store's "running it again" records (one per conflict) and the longest run."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.longest = 0
        self.previous_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if ": conflict " in message:
            self.count += 1
            self.longest = max(self.longest, int(message.split(": conflict ")[1].split()[0]))


def counting() -> Retries:
    handler = Retries()
    logger = logging.getLogger("sessiondb")
    handler.previous_level = logger.level  # restored by stop_counting
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def stop_counting(handler: Retries) -> None:
    """Undo :func:`counting`: later tests in this process must not see DEBUG records."""
    logger = logging.getLogger("sessiondb")
    logger.removeHandler(handler)
    logger.setLevel(handler.previous_level)


# -- work run in the pool's processes (top-level functions: spawn imports them) -------------------


def increments(url: str, session_id: str, count: int, report: str) -> None:
    """``count`` increments of the session's counter; writes what it saw to ``report``."""
    retries = counting()
    with SessionStore(url, **HOT_ROW) as store:
        start = time.monotonic()
        for _ in range(count):
            store.patch_state(session_id, increment={"n": 1})
        seconds = time.monotonic() - start
    Path(report).write_text(json.dumps([count, retries.count, retries.longest, seconds]))


def appends(url: str, session_id: str, author: str, count: int, report: str) -> None:
    """``count`` events by ``author``, numbered in their content; writes what it saw."""
    retries = counting()
    with SessionStore(url, **HOT_ROW) as store:
        start = time.monotonic()
        for k in range(count):
            store.append_event(session_id, author, {"k": k})
        seconds = time.monotonic() - start
    Path(report).write_text(json.dumps([count, retries.count, retries.longest, seconds]))


def first_use(url: str, front: str, user: str) -> None:
    """Open a store on a database with no table yet and write through it."""
    if front == "sync":
        with SessionStore(url) as store:
            store.create_session("app", user)
        return

    async def run() -> None:
        async with AsyncSessionStore(url) as store:
            await store.create_session("app", user)

    asyncio.run(run())


# -- helpers --------------------------------------------------------------------------------------


def reports(paths: list[Path]) -> tuple[int, int, int, float]:
    """(calls, retries, longest run of conflicts, slowest process's seconds) over ``paths``."""
    rows = [json.loads(p.read_text()) for p in paths]
    return (
        sum(r[0] for r in rows),
        sum(r[1] for r in rows),
        max(r[2] for r in rows),
        max(r[3] for r in rows),
    )


def node_of(galera_db: GaleraDatabase, i: int) -> str:
    return galera_db.urls[i % len(galera_db.urls)]


def assert_ran(outcomes: dict[int, Any], size: int) -> None:
    assert len(outcomes) == size, "a process never reported"
    failed = {n: tb for n, tb in outcomes.items() if tb is not None}
    assert not failed, "\n".join(failed.values())


# -- certification conflicts ----------------------------------------------------------------------


def test_increments_on_three_nodes_end_at_exactly_1600(
    galera_db: GaleraDatabase, process_pool: Callable[[int], Any], tmp_path: Path
) -> None:
    """8 processes x 200 increments of one key of one session, over the three nodes: every
    call succeeds, and the counter and the version count each increment exactly once."""
    with SessionStore(galera_db.url) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
    paths = [tmp_path / f"w{i}.json" for i in range(WRITERS)]
    argsets = [(node_of(galera_db, i), sid, INCREMENTS, str(paths[i])) for i in range(WRITERS)]
    assert_ran(process_pool(WRITERS).run(increments, argsets), WRITERS)
    calls, retries, longest, seconds = reports(paths)
    print(f"\n{calls} increments on 3 nodes: {retries} run again, at most {longest} times for "
          f"one call, {seconds:.1f} s")  # fmt: skip
    for url in galera_db.urls:  # every node holds the same: 1600, once each
        with SessionStore(url, **SYNCED) as store:
            got = store.get_session("app", "u", sid)
            assert got is not None
            assert got.state == {"n": WRITERS * INCREMENTS}
            assert got.version == 1 + WRITERS * INCREMENTS
            assert got.event_count == 0  # patch_state records no event


def test_event_appends_on_three_nodes_have_no_gap(
    galera_db: GaleraDatabase, process_pool: Callable[[int], Any], tmp_path: Path
) -> None:
    """8 processes x 100 appends to one session over the three nodes: seq 1..800 without a
    gap or a duplicate, each event stored once, in each writer's own order."""
    with SessionStore(galera_db.url) as store:
        sid = store.create_session("app", "u").id
    paths = [tmp_path / f"w{i}.json" for i in range(WRITERS)]
    argsets = [
        (node_of(galera_db, i), sid, f"w{i}", APPENDS, str(paths[i])) for i in range(WRITERS)
    ]
    assert_ran(process_pool(WRITERS).run(appends, argsets), WRITERS)
    calls, retries, longest, seconds = reports(paths)
    print(f"\n{calls} appends on 3 nodes: {retries} run again, at most {longest} times for "
          f"one call, {seconds:.1f} s")  # fmt: skip
    total = WRITERS * APPENDS
    with SessionStore(galera_db.urls[1], **SYNCED) as store:
        events = store.list_events(sid)
        got = store.get_session("app", "u", sid)
    assert [e.seq for e in events] == list(range(1, total + 1))
    for i in range(WRITERS):
        mine = [e.content["k"] for e in events if e.author == f"w{i}"]
        assert mine == list(range(APPENDS))  # each once, in the order it was appended
    assert got is not None
    assert got.event_count == total
    assert got.version == 1 + total


async def test_async_tasks_on_three_nodes(galera_db: GaleraDatabase) -> None:
    """12 tasks, 4 per node, each 40 times an increment and an append: 480 of each, no gap;
    the pauses between attempts are awaited, so the tasks of one loop keep running."""
    tasks_per_node, rounds = 4, 40
    stores = [AsyncSessionStore(url, **HOT_ROW) for url in galera_db.urls]
    retries = counting()
    try:
        sid = (await stores[0].create_session("app", "u", {"n": 0})).id

        async def work(store: AsyncSessionStore, author: str) -> None:
            for k in range(rounds):
                await store.patch_state(sid, increment={"n": 1})
                await store.append_event(sid, author, {"k": k})

        start = time.monotonic()
        await asyncio.gather(
            *(work(s, f"n{i}t{t}") for i, s in enumerate(stores) for t in range(tasks_per_node))
        )
        seconds = time.monotonic() - start
        total = len(stores) * tasks_per_node * rounds
        print(f"\n{2 * total} async calls on 3 nodes: {retries.count} run again, at most "
              f"{retries.longest} times for one call, {seconds:.1f} s")  # fmt: skip
        async with AsyncSessionStore(galera_db.urls[2], **SYNCED) as check:
            got = await check.get_session("app", "u", sid)
            events = await check.list_events(sid)
        assert got is not None
        assert got.state == {"n": total}
        assert got.version == 1 + 2 * total
        assert [e.seq for e in events] == list(range(1, total + 1))
        for author in {e.author for e in events}:
            assert [e.content["k"] for e in events if e.author == author] == list(range(rounds))
    finally:
        stop_counting(retries)
        for store in stores:
            await store.close()


# -- a conflict provoked on purpose ---------------------------------------------------------------


class Node:
    """A plain DBAPI connection to one node, in a transaction of its own."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
        self.conn: Any = self.engine.raw_connection()
        # statements wait until this node applied what the cluster certified before them
        self.run("SET SESSION wsrep_sync_wait = 7")

    def run(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def waiting(self) -> set[int]:
        """Ids of the transactions of this database waiting for a lock on this node."""
        rows = self.run(
            "SELECT t.trx_id FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = DATABASE() AND t.trx_state = 'LOCK WAIT'"
        )
        self.conn.commit()
        return {int(r[0]) for r in rows}

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


@pytest.fixture
def nodes(galera_db: GaleraDatabase) -> Iterator[tuple[Node, Node, Node]]:
    """Three connections: node 1's holds a lock, node 2's writes, node 1's other one watches."""
    opened = (Node(galera_db.urls[0]), Node(galera_db.urls[1]), Node(galera_db.urls[0]))
    yield opened
    for node in opened:
        node.close()


async def wait_for_a_new_wait(watch: Node, seen: set[int]) -> set[int]:
    """Poll until a transaction not in ``seen`` waits for a lock on the watched node (every
    0.2 s: InnoDB refreshes innodb_trx only when it was not read for 0.1 s)."""
    deadline = time.monotonic() + 30
    while True:
        now = await asyncio.to_thread(watch.waiting)
        if now - seen:
            return now | seen
        assert time.monotonic() < deadline, "the store's call never waited for the lock"
        await asyncio.sleep(0.2)


async def conflicts(
    store: Any, sid: str, nodes: tuple[Node, Node, Node], times: int, *, release: bool
) -> Any:
    """Run the store's ``patch_state`` into ``times`` certification conflicts: each time its
    transaction holds the session's row on node 1 and waits there for the app state (locked by
    the test), node 2 commits a change to the session's row, which aborts it. Then release
    the app state (``release``) or not; return the call's result or exception."""
    holder, writer, watch = nodes
    holder.run("SELECT state FROM app_states WHERE app_name = 'app' FOR UPDATE")
    change = {"set": {"app:x": 1}, "increment": {"n": 1}}
    if isinstance(store, AsyncSessionStore):
        call = asyncio.ensure_future(store.patch_state(sid, **change))
    else:  # the sync store (wrapped) would block this loop: it waits in a thread
        call = asyncio.ensure_future(asyncio.to_thread(store.sync.patch_state, sid, **change))
    seen: set[int] = set()
    try:
        for k in range(times):
            seen = await wait_for_a_new_wait(watch, seen)
            await asyncio.to_thread(
                writer.run, "UPDATE sessions SET title = %s WHERE id = %s", f"node 2, {k}", sid
            )
            await asyncio.to_thread(writer.conn.commit)
        if release:
            await asyncio.to_thread(holder.conn.rollback)
        return await call
    except Exception as exc:
        return exc
    finally:
        await asyncio.to_thread(holder.conn.rollback)


async def new_session(store: Any) -> str:
    s = await store.create_session("app", "u", {"n": 0})
    await store.patch_state(s.id, set={"app:x": 0})  # the app's shared state row exists
    return str(s.id)


async def test_a_conflict_is_run_again_and_applied_once(
    galera_db: GaleraDatabase, open_store: Callable[..., Any], nodes: tuple[Node, Node, Node]
) -> None:
    """Node 2's commit aborts the store's transaction on node 1: the call runs again, and
    succeeds once the lock is free; its increment is applied once, node 2's change kept."""
    store = open_store(galera_db.url)
    sid = await new_session(store)
    result = await conflicts(store, sid, nodes, 1, release=True)
    assert result == 3, repr(result)
    got = await store.get_session("app", "u", sid)
    assert got.state == {"n": 1, "app:x": 1}
    assert got.title == "node 2, 0"


@pytest.mark.parametrize("retries", [0, 1])
async def test_conflicts_beyond_the_retries_raise_conflict_error(
    galera_db: GaleraDatabase,
    open_store: Callable[..., Any],
    nodes: tuple[Node, Node, Node],
    retries: int,
) -> None:
    """With ``conflict_retries`` 0 or 1, as many certification conflicts as attempts raise
    ``ConflictError`` (a ``StaleSessionError``) and nothing of the call is written."""
    store = open_store(galera_db.url, conflict_retries=retries)
    sid = await new_session(store)
    result = await conflicts(store, sid, nodes, retries + 1, release=False)
    assert isinstance(result, ConflictError), repr(result)
    assert isinstance(result, StaleSessionError)
    assert result.attempts == retries + 1
    assert "nothing was written" in str(result)
    got = await store.get_session("app", "u", sid)
    assert got.state == {"n": 0, "app:x": 0}
    assert got.version == 2


# -- the schema on first use ----------------------------------------------------------------------


def tables_without_primary_key(url: str) -> tuple[set[str], list[str]]:
    """(every table of the database, those without a primary key)."""
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_table_names())
        keys = {n: inspector.get_pk_constraint(n)["constrained_columns"] for n in names}
        return names, sorted(n for n, columns in keys.items() if not columns)
    finally:
        engine.dispose()


@pytest.mark.parametrize("side", ["sync", "async"])
@pytest.mark.parametrize("attempt", range(5))
def test_first_use_on_three_nodes_at_once(
    galera_db: GaleraDatabase, process_pool: Callable[[int], Any], side: str, attempt: int
) -> None:
    """Three processes, one per node, open a store on a new database at once: all three
    succeed (the schema lock certifies cluster-wide), and every table has a primary key."""
    argsets = [(url, side, f"u{i}") for i, url in enumerate(galera_db.urls)]
    assert_ran(process_pool(3).run(first_use, argsets), 3)
    for url in galera_db.urls:
        with SessionStore(url, auto_migrate=False, **SYNCED) as store:
            assert store.current_revision() == HEAD
            assert store.count_sessions("app") == 3
    names, missing = tables_without_primary_key(galera_db.url)
    assert {version_table_name(""), lock_table_name(""), "sessions", "events"} <= names
    assert missing == []
    engine = sa.create_engine(resolve_url(galera_db.url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:  # released by every holder
            held = conn.execute(sa.text(f"SELECT COUNT(*) FROM {lock_table_name('')}"))
            assert held.scalar() == 0
    finally:
        engine.dispose()


def test_the_upgrade_is_committed_before_the_lock_is_released(
    galera_db: GaleraDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the holder releases the schema lock, another node already reads the revision it
    left: the next holder finds nothing to do (not the last revision again)."""
    seen: list[Any] = []
    original = schema_lock.cluster_lock

    @contextlib.contextmanager
    def watched(connection: Any, table: str, name: str) -> Iterator[Any]:
        with original(connection, table, name) as renew:
            yield renew
            url = resolve_url(galera_db.urls[1]).sync_url
            engine = sa.create_engine(url, poolclass=sa.NullPool, **SYNCED["engine_options"])
            try:
                with engine.connect() as conn:
                    query = sa.text(f"SELECT version_num FROM {version_table_name('')}")
                    seen.append(conn.execute(query).scalar())
            finally:
                engine.dispose()

    monkeypatch.setattr(schema_lock, "cluster_lock", watched)
    with SessionStore(galera_db.url) as store:
        store.count_sessions()
    assert seen == [HEAD]


def hold_the_lock(url: str, holder: str, seconds: int) -> None:
    """Leave the schema lock's row as ``holder`` would, its lease ending in ``seconds``."""
    engine = sa.create_engine(resolve_url(url).sync_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            schema_lock.create_table(conn, lock_table_name(""))
            conn.execute(
                sa.text(
                    f"INSERT INTO {lock_table_name('')} (name, holder, expires_at) VALUES "
                    "('sessiondb_migrate_', :h, UTC_TIMESTAMP(6) + INTERVAL :s SECOND)"
                ),
                {"h": holder, "s": seconds},
            )
    finally:
        engine.dispose()


def lock_rows(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(
        resolve_url(url).sync_url, poolclass=sa.NullPool, **SYNCED["engine_options"]
    )
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT name, holder FROM {lock_table_name('')}")
            return [tuple(r) for r in conn.execute(query)]
    finally:
        engine.dispose()


def test_a_crashed_holders_lock_is_taken_once_its_lease_ran_out(galera_db: GaleraDatabase) -> None:
    """A lock row whose lease ended (its holder died mid-upgrade) is deleted and taken."""
    hold_the_lock(galera_db.urls[1], "crashed-host:4242:abc", -1)
    with SessionStore(galera_db.url) as store:
        store.create_session("app", "u")
        assert store.current_revision() == HEAD
    assert lock_rows(galera_db.urls[2]) == []


def test_a_live_lock_makes_first_use_wait_then_fail_naming_its_holder(
    galera_db: GaleraDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the lock (its lease running), first use waits (here 1 s
    instead of 600) and raises ``SchemaError`` naming the holder; once it is released, the
    same store upgrades and works."""
    hold_the_lock(galera_db.urls[1], "busy-host:4242:abc", 3600)
    monkeypatch.setattr(schema_lock, "WAIT", 1.0)
    with SessionStore(galera_db.url) as store:
        with pytest.raises(SchemaError, match="busy-host:4242:abc"):
            store.create_session("app", "u")
        engine = sa.create_engine(resolve_url(galera_db.urls[2]).sync_url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DELETE FROM {lock_table_name('')}"))
        finally:
            engine.dispose()
        store.create_session("app", "u")
        assert store.current_revision() == HEAD


# -- a node cut off in a minority (a private cluster of the test's own) ---------------------------

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "cluster.sh"


@contextlib.contextmanager
def private_galera() -> Iterator[tuple[Path, list[str]]]:
    """Three Galera nodes of this test's own (tools/cluster.sh in a directory and on ports of
    its own, 3351-3399), destroyed by PID at the end: (directory, node URLs)."""
    import os
    import random
    import subprocess
    import tempfile

    if not Path("/usr/lib/galera/libgalera_smm.so").exists():
        pytest.skip("galera-4 is not installed: apt-get install -y galera-4")
    directory = Path(tempfile.mkdtemp(prefix="sessiondb-galera-", dir="/tmp"))
    # the ports of the run's own cluster (.ci/run exports them) would be this one's too
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONDB_CLUSTER_")}
    env["SESSIONDB_CLUSTER_DIR"] = str(directory)
    ports = random.sample(range(3351, 3397, 3), 3)
    try:
        for port in ports:  # another process may hold the ports: take the next ones
            env["SESSIONDB_CLUSTER_GALERA_PORT"] = str(port)
            done = subprocess.run(
                ["bash", str(SCRIPT), "start", "galera"], env=env, capture_output=True,
                text=True, timeout=180, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                break
            assert "is taken" in done.stderr + done.stdout, done.stderr + done.stdout
        else:
            raise AssertionError("no free ports for a private Galera cluster")
        yield directory, [f"mysql://root@127.0.0.1:{port + i}/test" for i in range(3)]
    finally:
        subprocess.run(["bash", str(SCRIPT), "destroy"], env=env, capture_output=True,
                       timeout=120, check=False)  # fmt: skip


def on_node(url: str, sql: str) -> Any:
    """Run ``sql`` on a node with a bare PyMySQL connection (SQLAlchemy's first-connect queries
    are refused by a node out of the primary component; SHOW and SET GLOBAL are not)."""
    import pymysql

    where = sa.make_url(url)
    conn = pymysql.connect(host=where.host, port=where.port, user=where.username, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()
    finally:
        conn.close()


def status(url: str, name: str) -> str:
    row = on_node(url, f"SHOW STATUS LIKE '{name}'")
    return "" if row is None else str(row[1])


def test_a_node_cut_off_in_a_minority_drops_its_connections() -> None:
    """Two nodes of three die: the last one stays up, out of the primary component, and
    answers every query with 1047. The store raises DatabaseUnavailableError (not a bare
    DatabaseError) and drops its pooled connections to that node; once the node serves again
    (bootstrapped as a cluster of one), the same store works."""
    import os
    import signal

    from sessiondb import DatabaseUnavailableError

    with private_galera() as (directory, urls):
        on_node(urls[0], "CREATE DATABASE sdbt_minority")
        url = urls[0].replace("/test", "/sdbt_minority")
        with SessionStore(url, connect_timeout=3) as store:
            sid = store.create_session("app", "u", {"n": 0}).id
            for name in ("galera2", "galera3"):
                pid = int((directory / name / "mariadbd.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 90
            while status(urls[0], "wsrep_cluster_status") == "Primary":
                assert time.monotonic() < deadline, "node 1 never left the primary component"
                time.sleep(0.2)
            with pytest.raises(DatabaseUnavailableError, match="1047"):
                store.get_session("app", "u", sid)
            with pytest.raises(DatabaseUnavailableError, match="1047"):
                store.patch_state(sid, increment={"n": 1})
            # the operator's way back: node 1 alone becomes the primary component
            on_node(urls[0], "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
            deadline = time.monotonic() + 60
            while status(urls[0], "wsrep_cluster_status") != "Primary":
                assert time.monotonic() < deadline, "node 1 never became primary again"
                time.sleep(0.2)
            assert store.patch_state(sid, increment={"n": 1}) == 2
            got = store.get_session("app", "u", sid)
            assert got is not None and got.state == {"n": 1}
