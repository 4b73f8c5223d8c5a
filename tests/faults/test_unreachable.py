"""Issue 10 §5: servers that cannot be reached, or never answer, and bad credentials.

Whatever goes wrong, a call ends within ``connect_timeout`` with the right sessiondb class, and
no message (nor any exception chained to it) shows the password.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import pytest

import sessiondb.errors
from sessiondb.errors import ConfigurationError, DatabaseUnavailableError, SessionDBError

from ._harness import (
    APP,
    CONNECT_TIMEOUT,
    OP_BOUND,
    SLACK,
    Outcome,
    attempt,
    new_user,
    open_store,
    run_bounded,
    xfail,
)
from ._servers import PASSWORD

WRONG_PASSWORD = "Wrong-Pw-5d8e07b4"
#: How long a call may take before it counts as hung (then the test fails at once).
HANG = CONNECT_TIMEOUT + 3


def url_for(dbms: str, port: int, password: str = PASSWORD, database: str = "faults") -> str:
    scheme = "postgresql" if dbms == "postgresql" else "mysql"
    return f"{scheme}://sdb_fault:{password}@127.0.0.1:{port}/{database}"


def assert_no_password(outcome: Outcome, *passwords: str) -> None:
    """Neither the message, the repr, nor any exception chained to the error shows a password."""
    assert outcome.error is not None
    text = "".join(traceback.format_exception(outcome.error)) + repr(outcome.error)
    for password in passwords:
        assert password not in text, f"the password is in the error: {text[-2000:]}"


def assert_unavailable_in_time(outcome: Outcome, where: str) -> None:
    assert not outcome.hung, f"{where}: {outcome}"
    assert isinstance(outcome.error, DatabaseUnavailableError), f"{where}: {outcome}"
    assert outcome.elapsed < CONNECT_TIMEOUT + SLACK, (
        f"{where}: {outcome}, connect_timeout={CONNECT_TIMEOUT}"
    )


async def first_call(front: str, url: str) -> Outcome:
    async with open_store(front, url) as store:
        return await attempt(store.get_session(APP, new_user(), "s"), HANG)


# -- nobody there, or nobody answering ------------------------------------------------------------


def test_refused_port(dbms: str, front: str, refused_port: int) -> None:
    """Nobody listens: DatabaseUnavailableError at once, naming host and port, no password."""
    outcome = run_bounded(lambda: first_call(front, url_for(dbms, refused_port)), 30)
    assert_unavailable_in_time(outcome, "refused port")
    assert f"127.0.0.1:{refused_port}" in str(outcome.error)
    assert_no_password(outcome, PASSWORD)


PG_TIMEOUT_CLASS = (
    "psycopg's ConnectionTimeout ('connection timeout expired') becomes DatabaseError, "
    "not DatabaseUnavailableError"
)
GREETING = "ignores connect_timeout once the TCP connection is accepted: it waits for the "
GREETING += "server's greeting with no timeout (a hang)"
SILENT = [
    pytest.param("postgresql", "sync", marks=xfail(PG_TIMEOUT_CLASS)),
    pytest.param("postgresql", "async"),
    pytest.param("mysql", "sync", marks=xfail(f"PyMySQL {GREETING}")),
    pytest.param("mysql", "async", marks=xfail(f"aiomysql {GREETING}")),
]


@pytest.mark.parametrize(("dbms", "front"), SILENT)
def test_silent_server(dbms: str, front: str, silent_port: int) -> None:
    """A server that accepts the connection and never answers: DatabaseUnavailableError
    within connect_timeout."""
    outcome = run_bounded(lambda: first_call(front, url_for(dbms, silent_port)), 30)
    assert_unavailable_in_time(outcome, "silent server")
    assert_no_password(outcome, PASSWORD)


WARM = "a call on a pooled connection to a frozen (SIGSTOP) server waits forever (no read "
WARM += "timeout)"
FROZEN = [
    pytest.param("postgresql", "sync", marks=xfail(f"{WARM}; a new one: {PG_TIMEOUT_CLASS}")),
    pytest.param("postgresql", "async", marks=xfail(WARM)),
    pytest.param("mysql", "sync", marks=xfail(f"{WARM}; a new one too: PyMySQL {GREETING}")),
    pytest.param(
        "mysql",
        "async",
        marks=xfail(
            f"{WARM}; a new one too: aiomysql {GREETING}; after SIGCONT, the connection whose "
            "call was abandoned fails the next call ('Cancelled during execution')"
        ),
    ),
]


@pytest.mark.parametrize(("dbms", "front"), FROZEN)
def test_frozen_server(db: Any, front: str) -> None:
    """SIGSTOP: a store that has connections (warm) and one that has none yet (cold) each get
    DatabaseUnavailableError within connect_timeout; after SIGCONT both work again."""

    async def scenario() -> None:
        user = new_user()
        async with open_store(front, db.url()) as warm, open_store(front, db.url()) as cold:
            session = await warm.create_session(APP, user)
            await cold.list_sessions(APP, user)  # the cold store checks the schema...
            await cold.close()  # ...and lets its connections go: its next call must connect
            try:
                db.server.freeze()
                during = await asyncio.gather(
                    attempt(warm.get_session(APP, user, session.id), HANG),
                    attempt(cold.get_session(APP, user, session.id), HANG),
                )
            finally:
                db.server.thaw()
            after = [
                await attempt(warm.get_session(APP, user, session.id), OP_BOUND),
                await attempt(cold.get_session(APP, user, session.id), OP_BOUND),
            ]
            problems = []
            for name, outcome in zip(("warm", "cold"), during, strict=True):
                try:
                    assert_unavailable_in_time(outcome, f"{name} store, frozen server")
                except AssertionError as exc:
                    problems.append(str(exc).splitlines()[0])
            for name, outcome in zip(("warm", "cold"), after, strict=True):
                if not outcome.ok:
                    problems.append(f"{name} store after SIGCONT: {outcome}")
            assert not problems, "\n".join(problems)

    run_bounded(scenario, 60)


# -- credentials and names ----------------------------------------------------------------------


def test_wrong_password_never_shows_a_password(db: Any, front: str) -> None:
    """A wrong password: a sessiondb error, within connect_timeout, showing no password."""
    outcome = run_bounded(lambda: first_call(front, db.url(password=WRONG_PASSWORD)), 30)
    assert isinstance(outcome.error, SessionDBError), str(outcome)
    assert outcome.elapsed < CONNECT_TIMEOUT + SLACK, str(outcome)
    assert_no_password(outcome, WRONG_PASSWORD, PASSWORD)


@xfail(
    "there is no AuthenticationError yet (a wrong password raises "
    "DatabaseUnavailableError on PostgreSQL sync, DatabaseError elsewhere)",
)
def test_wrong_password_is_authentication_error(db: Any, front: str) -> None:
    """A wrong password raises sessiondb.errors.AuthenticationError (a SessionDBError)."""
    outcome = run_bounded(lambda: first_call(front, db.url(password=WRONG_PASSWORD)), 30)
    cls = getattr(sessiondb.errors, "AuthenticationError", None)
    assert cls is not None, f"no sessiondb.errors.AuthenticationError; raised {outcome}"
    assert issubclass(cls, SessionDBError)
    assert isinstance(outcome.error, cls), str(outcome)


@xfail(
    "a missing database raises DatabaseUnavailableError (PostgreSQL sync) "
    "or DatabaseError (PostgreSQL async, MariaDB), not ConfigurationError",
)
def test_missing_database(server: Any, front: str) -> None:
    """A database the server does not have: ConfigurationError (README: "unknown database";
    retrying cannot help, so never DatabaseUnavailableError), naming it, without the password."""
    name = "faults_no_such_database"
    outcome = run_bounded(lambda: first_call(front, server.url(name)), 30)
    assert isinstance(outcome.error, ConfigurationError), str(outcome)
    assert not isinstance(outcome.error, DatabaseUnavailableError), str(outcome)
    assert name in str(outcome.error), str(outcome)
    assert_no_password(outcome, PASSWORD)
