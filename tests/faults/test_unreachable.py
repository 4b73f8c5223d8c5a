"""Issue 10 §5: servers that cannot be reached, or never answer, and bad credentials.

Whatever goes wrong, a call ends within ``connect_timeout`` with the right sessiondb class, and
no message (nor any exception chained to it) shows the password.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import sessiondb.errors
from sessiondb.errors import (
    AuthenticationError,
    ConfigurationError,
    DatabaseUnavailableError,
    SessionDBError,
)

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
)
from ._servers import PASSWORD

WRONG_PASSWORD = "Wrong-Pw-5d8e07b4"
#: How long a call may take before it counts as hung (then the test fails at once).
HANG = CONNECT_TIMEOUT + 3
#: The statement_timeout of the frozen-server test: a call on an open connection to a server
#: that stopped answering fails within statement_timeout + connect_timeout.
STATEMENT_TIMEOUT = 1


def url_for(dbms: str, port: int, password: str = PASSWORD, database: str = "faults") -> str:
    scheme = "postgresql" if dbms == "postgresql" else "mysql"
    return f"{scheme}://sdb_fault:{password}@127.0.0.1:{port}/{database}"


def assert_no_password(outcome: Outcome, *passwords: str) -> None:
    """Neither the message, the repr, nor any exception chained to the error shows a password."""
    assert outcome.error is not None
    text = "".join(traceback.format_exception(outcome.error)) + repr(outcome.error)
    for password in passwords:
        assert password not in text, f"the password is in the error: {text[-2000:]}"


def assert_unavailable_in_time(
    outcome: Outcome, where: str, bound: float = CONNECT_TIMEOUT
) -> None:
    assert not outcome.hung, f"{where}: {outcome}"
    assert isinstance(outcome.error, DatabaseUnavailableError), f"{where}: {outcome}"
    assert outcome.elapsed < bound + SLACK, f"{where}: {outcome}, within {bound} s expected"


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


def test_silent_server(dbms: str, front: str, silent_port: int) -> None:
    """A server that accepts the connection and never answers: DatabaseUnavailableError
    within connect_timeout."""
    outcome = run_bounded(lambda: first_call(front, url_for(dbms, silent_port)), 30)
    assert_unavailable_in_time(outcome, "silent server")
    assert_no_password(outcome, PASSWORD)


def test_frozen_server(db: Any, front: str) -> None:
    """SIGSTOP: a store that has connections (warm) and one that has none yet (cold) each get
    DatabaseUnavailableError, the cold one within connect_timeout, the warm one (its statement
    was sent) within statement_timeout + connect_timeout; after SIGCONT both work again."""

    async def scenario() -> None:
        user = new_user()
        options = {"statement_timeout": STATEMENT_TIMEOUT}
        async with (
            open_store(front, db.url(), **options) as warm,
            open_store(front, db.url(), **options) as cold,
        ):
            session = await warm.create_session(APP, user)
            await cold.list_sessions(APP, user)  # the cold store checks the schema...
            await cold.close()  # ...and lets its connections go: its next call must connect
            try:
                db.server.freeze()
                during = await asyncio.gather(
                    attempt(warm.get_session(APP, user, session.id), HANG + STATEMENT_TIMEOUT),
                    attempt(cold.get_session(APP, user, session.id), HANG),
                )
            finally:
                db.server.thaw()
            after = [
                await attempt(warm.get_session(APP, user, session.id), OP_BOUND),
                await attempt(cold.get_session(APP, user, session.id), OP_BOUND),
            ]
            problems = []
            bounds = (CONNECT_TIMEOUT + STATEMENT_TIMEOUT, CONNECT_TIMEOUT)
            for name, outcome, bound in zip(("warm", "cold"), during, bounds, strict=True):
                try:
                    assert_unavailable_in_time(outcome, f"{name} store, frozen server", bound)
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


def test_wrong_password_is_authentication_error(db: Any, front: str) -> None:
    """A wrong password raises sessiondb.errors.AuthenticationError (a SessionDBError, not
    DatabaseUnavailableError: retrying will not help), saying so and naming the user."""
    outcome = run_bounded(lambda: first_call(front, db.url(password=WRONG_PASSWORD)), 30)
    cls = getattr(sessiondb.errors, "AuthenticationError", None)
    assert cls is not None, f"no sessiondb.errors.AuthenticationError; raised {outcome}"
    assert issubclass(cls, SessionDBError)
    assert isinstance(outcome.error, AuthenticationError), str(outcome)
    assert not isinstance(outcome.error, DatabaseUnavailableError), str(outcome)
    assert "authentication failed for user 'sdb_fault'" in str(outcome.error), str(outcome)
    assert "cannot reach" not in str(outcome.error), str(outcome)


def test_missing_database(server: Any, front: str) -> None:
    """A database the server does not have: ConfigurationError (README: "unknown database";
    retrying cannot help, so never DatabaseUnavailableError), naming it, without the password."""
    name = "faults_no_such_database"
    outcome = run_bounded(lambda: first_call(front, server.url(name)), 30)
    assert isinstance(outcome.error, ConfigurationError), str(outcome)
    assert not isinstance(outcome.error, DatabaseUnavailableError), str(outcome)
    assert name in str(outcome.error), str(outcome)
    assert_no_password(outcome, PASSWORD)
