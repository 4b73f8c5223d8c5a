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
