"""The ``pooler`` option and the servers errors name (issue 11 §3), without a pooler.

Through PgBouncer itself: ``tests/scale/test_pgbouncer.py``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    SessionStore,
)
from sessiondb._urls import resolve_url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


@pytest.mark.parametrize("how", ["url", "option"])
def test_pooler_transaction_works_on_a_direct_connection(
    db_url: str, backend: str, how: str
) -> None:
    if backend != "postgresql":
        pytest.skip("pooler applies to PostgreSQL")
    url = _with_query(db_url, "pooler=transaction") if how == "url" else db_url
    options = {"pooler": "transaction"} if how == "option" else {}
    # the drivers never see ?pooler= (psycopg and asyncpg refuse options they do not know)
    with SessionStore(url, **options) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
        for _ in range(7):  # past psycopg's prepare threshold
            store.patch_state(sid, increment={"n": 1})

    async def main() -> int:
        async with AsyncSessionStore(url, **options) as astore:
            for _ in range(7):
                await astore.patch_state(sid, increment={"n": 1})
            session = await astore.get_session("app", "u", sid)
            assert session is not None
            return int(session.state["n"])

    assert asyncio.run(main()) == 14


@pytest.mark.parametrize(
    ("url", "options", "says"),
    [
        ("postgresql://u@h/db?pooler=pgbouncer", {}, "unknown pooler 'pgbouncer'"),
        ("postgresql://u@h/db", {"pooler": "statement"}, "unknown pooler 'statement'"),
        ("postgresql://u@h/db?pooler=transaction&pooler=session", {}, "unknown pooler"),
        ("mysql://u@h/db?pooler=transaction", {}, "applies to PostgreSQL"),
        ("mysql://u@h/db", {"pooler": "transaction"}, "applies to PostgreSQL"),
        ("sqlite:///./x.db", {"pooler": "transaction"}, "applies to PostgreSQL"),
        ("postgresql://u@h/db?pooler=transaction", {"statement_timeout": 5}, "query_timeout"),
    ],
)
def test_pooler_mistakes_are_configuration_errors(
    url: str, options: dict[str, object], says: str
) -> None:
    for store_class in (SessionStore, AsyncSessionStore):
        with pytest.raises(ConfigurationError, match=says):
            store_class(url, **options)  # type: ignore[arg-type]


def test_pooler_given_twice_must_agree() -> None:
    assert resolve_url("postgresql://u@h/db?pooler=transaction").pooler == "transaction"
    assert "pooler" not in resolve_url("postgresql://u@h/db?pooler=transaction").sync_url.query
    SessionStore("postgresql://u@h/db?pooler=transaction", pooler="transaction").close()


def test_a_multi_host_url_names_every_host_it_could_not_reach() -> None:
    p1, p2 = _closed_port(), _closed_port()
    url = f"postgresql://postgres@/db?host=127.0.0.1:{p1}&host=127.0.0.1:{p2}"
    with (
        SessionStore(url, connect_timeout=2) as store,
        pytest.raises(DatabaseUnavailableError) as info,
    ):
        store.count_sessions()
    assert f"127.0.0.1:{p1},127.0.0.1:{p2}" in str(info.value)
    assert "localhost:5432" not in str(info.value)


@pytest.mark.parametrize("front_end", ["sync", "async"])
def test_an_error_names_the_server_that_answered(
    backend: str, make_db_url: Callable[..., str], front_end: str
) -> None:
    """With several hosts, the one the failing connection reached (not the first, nor
    ``localhost:5432``)."""
    if backend != "postgresql":
        pytest.skip("multi-host URLs are PostgreSQL's")
    direct = sa.make_url(make_db_url())
    closed = _closed_port()
    host, port = direct.host, direct.port or 5432
    user = direct.username or ""
    text = f"postgresql://{user}@/{direct.database}?host=127.0.0.1:{closed}&host={host}:{port}"

    def drop_sessions() -> None:
        engine = sa.create_engine(resolve_url(direct).sync_url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE sessions CASCADE")
        engine.dispose()

    async def fail() -> None:
        if front_end == "sync":
            with SessionStore(text) as store:
                store.count_sessions()  # the schema, made through the second host
                drop_sessions()
                store.count_sessions()
            return
        async with AsyncSessionStore(text) as astore:
            await astore.count_sessions()
            drop_sessions()
            await astore.count_sessions()

    with pytest.raises(DatabaseError) as info:
        asyncio.run(fail())
    assert f"at {host}:{port}:" in str(info.value)
    assert str(closed) not in str(info.value)


def _pg_errors(url: str) -> dict[str, BaseException]:
    """Real psycopg errors from the server, one of each kind a transaction-mode pooler causes."""
    import psycopg

    found: dict[str, BaseException] = {}
    info = resolve_url(url).sync_url
    conninfo = info.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, steps in {
            "missing": ["EXECUTE sdbt_nowhere"],
            "duplicate": ["PREPARE sdbt_twice AS SELECT 1", "PREPARE sdbt_twice AS SELECT 1"],
        }.items():
            try:
                for sql in steps:
                    conn.execute(sql)
            except psycopg.Error as exc:
                found[name] = exc
        # psycopg's own _pg3_0, replaced behind its back by a statement of one parameter: the
        # next Bind supplies two (what a pooler does when two clients share a name)
        query = "SELECT %s::int + %s::int"
        conn.execute(query, (1, 2), prepare=True)
        conn.execute("DEALLOCATE _pg3_0")
        conn.execute("PREPARE _pg3_0(int) AS SELECT $1")
        try:
            conn.execute(query, (1, 2), prepare=True)
        except psycopg.Error as exc:
            found["bind"] = exc
    return found


def test_a_pooler_s_errors_are_classified_as_such(db_url: str, backend: str) -> None:
    from sessiondb import PoolerError
    from sessiondb._runner import classify, translate

    if backend != "postgresql":
        pytest.skip("prepared statements by name are PostgreSQL's")
    errors = _pg_errors(db_url)
    assert {name: getattr(exc, "sqlstate", None) for name, exc in errors.items()} == {
        "missing": "26000", "duplicate": "42P05", "bind": "08P01"
    }  # fmt: skip
    assert "bind message supplies 2 parameters" in str(errors["bind"])
    target = resolve_url(db_url)
    for exc in errors.values():
        assert classify(exc, "postgresql") == "pooler"
        error = translate(exc, target)
        assert isinstance(error, PoolerError) and isinstance(error, ConfigurationError)
        assert "?pooler=transaction" in str(error) and target.location in str(error)


def test_a_statement_name_taken_on_the_server_is_a_pooler_error(db_url: str, backend: str) -> None:
    """A store on your own Engine (psycopg's default names, ``_pg3_0`` first) whose server
    connection already holds a ``_pg3_0``, as a pooler's shared one would: PoolerError, and
    the store goes on without the connection."""
    from sessiondb import PoolerError

    if backend != "postgresql":
        pytest.skip("prepared statements by name are PostgreSQL's")
    engine = sa.create_engine(resolve_url(db_url).sync_url, pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        conn.exec_driver_sql("PREPARE _pg3_0 AS SELECT 1")  # left on the pooled connection
        conn.commit()
    with SessionStore(engine) as store:
        sid = store.create_session("app", "u", {"n": 0}).id
        with pytest.raises(PoolerError, match="already exists"):
            for _ in range(6):  # psycopg prepares on the 5th use
                store.patch_state(sid, increment={"n": 1})
        done = store.get_session("app", "u", sid)
        assert done is not None
        assert store.patch_state(sid, increment={"n": 1}) == done.version + 1
    engine.dispose()
