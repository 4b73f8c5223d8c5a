"""Multi-host PostgreSQL URLs: every accepted form, and a standby listed first.

The forms are parsed without a server; the routing tests run on the shared cluster of
``tools/cluster.sh`` (a primary and two hot standbys), through both front ends.
"""

from __future__ import annotations

import time

import pytest

from sessiondb import (
    AsyncSessionStore,
    ConfigurationError,
    DatabaseUnavailableError,
    ReadOnlyDatabaseError,
    SessionStore,
)
from sessiondb._urls import resolve_url

from ._pg import Cluster

# -- the forms -----------------------------------------------------------------------------------

LIBPQ = "postgresql://u:secret@h1:5441,h2:5442/db?target_session_attrs=read-write"


@pytest.mark.parametrize(
    "url",
    [
        LIBPQ,
        "postgresql://u:secret@/db?host=h1:5441&host=h2:5442&target_session_attrs=read-write",
        "postgresql://u:secret@/db?host=h1,h2&port=5441,5442&target_session_attrs=read-write",
        "postgresql+asyncpg://u:secret@h1:5441,h2:5442/db?target_session_attrs=read-write",
        "postgresql+psycopg://u:secret@h1:5441,h2:5442/db?target_session_attrs=read-write",
    ],
)
def test_every_multi_host_form_becomes_one(url: str) -> None:
    target = resolve_url(url)
    assert target.hosts == (("h1", 5441), ("h2", 5442))
    assert target.location == "h1:5441,h2:5442"
    assert target.safe_url.endswith("u:***@h1:5441,h2:5442/db?target_session_attrs=read-write")
    for side in (target.sync_url, target.async_url):
        assert side.host is None and side.port is None
        assert dict(side.query) == {
            "host": "h1,h2", "port": "5441,5442", "target_session_attrs": "read-write"
        }  # fmt: skip
    assert target.sync_url.get_driver_name() == "psycopg"
    assert target.async_url.get_driver_name() in ("asyncpg", "psycopg_async")


def test_what_each_dialect_hands_its_driver() -> None:
    """libpq gets comma-separated hosts and ports; asyncpg gets lists, every port given."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    target = resolve_url("postgresql://u@h1:5441,h2/db?target_session_attrs=read-write")
    _, libpq = PGDialect_psycopg().create_connect_args(target.sync_url)
    assert (libpq["host"], libpq["port"]) == ("h1,h2", "5441,5432")
    assert libpq["target_session_attrs"] == "read-write"
    _, asyncpg = PGDialect_asyncpg().create_connect_args(target.async_url)
    assert (asyncpg["host"], asyncpg["port"]) == (["h1", "h2"], [5441, 5432])
    assert asyncpg["target_session_attrs"] == "read-write"


def test_ipv6_hosts_and_default_ports() -> None:
    target = resolve_url("postgresql://u@[::1]:5441,h2/db")
    assert target.hosts == (("::1", 5441), ("h2", 5432))
    assert target.location == "[::1]:5441,h2:5432"


def test_one_host_is_left_alone() -> None:
    for url in ("postgresql://u@h:5441/db", "postgresql://u@/db?host=/var/run/postgresql"):
        target = resolve_url(url)
        assert target.hosts == ()
        assert target.sync_url.render_as_string() == resolve_url(url).sync_url.render_as_string()
    assert resolve_url("postgresql://u@h:5441/db").location == "h:5441"


@pytest.mark.parametrize(
    "url, words",
    [
        ("postgresql://u@h1:54x1,h2/db", "host:port"),
        ("postgresql://u@h1:99999,h2/db", "out of range"),
        ("postgresql://u@h1,,h2/db", "host:port"),
        ("postgresql://u@h1,h2/db?host=h3:1&host=h4:2", "both"),
        ("postgresql://u@h0/db?host=h3:1&host=h4:2", "both"),
        ("postgresql://u@/db?host=h1,h2&port=1,2,3", "2 hosts and 3 ports"),
        ("mysql://u@h1:3306,h2:3306/db", "PostgreSQL only"),
    ],
)
def test_bad_multi_host_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionStore(url)
    assert words in str(info.value)
    assert "secret" not in str(info.value)


# -- on the cluster ------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Cluster:
    return Cluster.shared()


def test_a_standby_first_then_the_primary_lands_on_the_primary(cluster: Cluster) -> None:
    with cluster.database() as name:
        standby, primary = cluster.standby_address(0), cluster.primary_address()
        url = cluster.url(name, [standby, primary], target_session_attrs="read-write")
        store = SessionStore(url)
        try:
            session = store.create_session("app", "user", {"n": 1})
            assert store.patch_state(session.id, increment={"n": 1}) == 2
            assert cluster.server_port(store) == primary[1]
        finally:
            store.close()
        assert cluster.read_on_primary(name, session.id) == {"n": 2}


async def test_a_standby_first_then_the_primary_lands_on_the_primary_async(
    cluster: Cluster,
) -> None:
    with cluster.database() as name:
        standby, primary = cluster.standby_address(0), cluster.primary_address()
        url = cluster.url(name, [standby, primary], target_session_attrs="read-write")
        store = AsyncSessionStore(url)
        try:
            session = await store.create_session("app", "user", {"n": 1})
            assert await store.patch_state(session.id, increment={"n": 1}) == 2
            assert await cluster.server_port_async(store) == primary[1]
        finally:
            await store.close()
        assert cluster.read_on_primary(name, session.id) == {"n": 2}


def test_a_write_on_a_standby_is_refused_with_a_typed_error(cluster: Cluster) -> None:
    """Without target_session_attrs the URL may lead to a standby: reads work there, and a
    write is refused (SQLSTATE 25006) with ReadOnlyDatabaseError, at once, never retried in
    a loop; nothing is written."""
    with cluster.database() as name:
        primary = SessionStore(cluster.url(name, [cluster.primary_address()]))
        session = primary.create_session("app", "user", {"n": 1})
        primary.close()
        standby = cluster.standby_address(0)
        cluster.wait_for(lambda: cluster.has_session(standby, name, session.id), "replay")
        store = SessionStore(cluster.url(name, [standby]), connect_timeout=2)
        try:
            found = store.get_session("app", "user", session.id)
            assert found is not None and found.state == {"n": 1}
            for _ in range(3):  # the pooled connection, then a new one each time
                started = time.monotonic()
                with pytest.raises(ReadOnlyDatabaseError) as info:
                    store.patch_state(session.id, increment={"n": 1})
                assert time.monotonic() - started < 2
                assert f"{standby[0]}:{standby[1]}" in str(info.value)
                assert "target_session_attrs=read-write" in str(info.value)
            assert store.get_session("app", "user", session.id).state == {"n": 1}  # type: ignore[union-attr]
        finally:
            store.close()
        assert cluster.read_on_primary(name, session.id) == {"n": 1}


async def test_a_write_on_a_standby_is_refused_with_a_typed_error_async(cluster: Cluster) -> None:
    with cluster.database() as name:
        primary = AsyncSessionStore(cluster.url(name, [cluster.primary_address()]))
        session = await primary.create_session("app", "user", {"n": 1})
        await primary.close()
        standby = cluster.standby_address(0)
        cluster.wait_for(lambda: cluster.has_session(standby, name, session.id), "replay")
        store = AsyncSessionStore(cluster.url(name, [standby]), connect_timeout=2)
        try:
            assert (await store.get_session("app", "user", session.id)) is not None
            for _ in range(3):
                with pytest.raises(ReadOnlyDatabaseError):
                    await store.append_event(session.id, "user", "hi")
            assert await store.list_events(session.id) == []
        finally:
            await store.close()


async def test_no_primary_among_the_hosts_names_each_one(cluster: Cluster) -> None:
    """Every host refused (one down, one a standby): DatabaseUnavailableError within the
    connect timeouts, naming every host; the sync store says what each one answered."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        down = ("127.0.0.1", free.getsockname()[1])
    standby = cluster.standby_address(0)
    url = cluster.url("test", [down, standby], target_session_attrs="read-write")
    where = f"{down[0]}:{down[1]},{standby[0]}:{standby[1]}"
    store = SessionStore(url, connect_timeout=2)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            store.create_session("app", "user")
    finally:
        store.close()
    message = str(info.value)
    assert where in message
    assert f"{down[0]}:{down[1]}: Connection refused" in message
    assert f"{standby[0]}:{standby[1]}: session is read-only" in message
    astore = AsyncSessionStore(url, connect_timeout=2)
    try:
        with pytest.raises(DatabaseUnavailableError) as ainfo:
            await astore.create_session("app", "user")
    finally:
        await astore.close()
    assert where in str(ainfo.value)
