"""The exceptions sessiondb raises.

Every error derives from :class:`SessionDBError`, so ``except SessionDBError`` catches anything
the library raises on purpose. Errors that mean "bad argument" also derive from the matching
built-in (``ValueError``, ``TypeError``, ``LookupError``), so code written against plain Python
conventions keeps working::

    SessionDBError
    ├── ConfigurationError (ValueError)        bad URL, unknown database, bad option
    │   ├── DriverNotInstalledError (ImportError)   names the extra to install
    │   └── PoolerError                        a transaction-mode pooler the store was not told of
    ├── InvalidArgumentError (ValueError)      a bad argument (limit, order, batch size, ttl...)
    │   ├── ArgumentTypeError (TypeError)      an argument of the wrong type
    │   ├── InvalidIdError                     empty, overlong, non-str or unprintable id
    │   ├── InvalidCursorError                 a list_sessions cursor that is not ours
    │   ├── InvalidRecordError                 an import record not in sessiondb's format
    │   ├── AmbiguousSessionError              a session id alone, shared by several owners
    │   └── InvalidStateError                  state JSON cannot hold (NaN, huge int, ...)
    │       └── StateTypeError (TypeError)     sets, bytes, objects, non-str keys
    ├── SessionNotFoundError (LookupError)     no such session (or not yours)
    ├── SessionExistsError                     create_session with an id the owner already has
    ├── StaleSessionError                      expected_version no longer matches
    │   └── ConflictError                      lost to concurrent writers every attempt
    ├── SchemaError                            database schema missing, too old or too new
    └── DatabaseError                          any other driver error, translated
        ├── AuthenticationError                the server refused the user or password
        ├── UnexpectedResultError              a statement's answer is not its own result
        └── DatabaseUnavailableError (ConnectionError)   cannot reach the server
            ├── OutcomeUnknownError            the connection died after a write was sent
            └── ReadOnlyDatabaseError          a write reached a read-only server (a standby)

Driver exceptions are translated at one boundary (``sessiondb._runner.translate``), classified
by SQLSTATE, MySQL error number or SQLite result code; the original exception is kept as
``__cause__``. Exceptions raised by your own code (a ``transform_state`` callback) pass through
untouched.
"""

from __future__ import annotations

__all__ = [
    "AmbiguousSessionError",
    "ArgumentTypeError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidRecordError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DriverNotInstalledError",
    "InvalidIdError",
    "InvalidStateError",
    "OutcomeUnknownError",
    "PoolerError",
    "ReadOnlyDatabaseError",
    "SchemaError",
    "SessionDBError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StaleSessionError",
    "StateTypeError",
    "UnexpectedResultError",
]


class SessionDBError(Exception):
    """Base class of every error sessiondb raises."""


class ConfigurationError(SessionDBError, ValueError):
    """The URL or an option is wrong: the message shows the right form."""


class DriverNotInstalledError(ConfigurationError, ImportError):
    """The database driver for a URL is not installed; the message names the extra."""


class PoolerError(ConfigurationError):
    """The server answered like a transaction-mode pooler (PgBouncer) in front of PostgreSQL
    that the store was not told about: a prepared statement missing or already there, or a
    protocol error on one. Open the store with ``pooler="transaction"`` (or add
    ``?pooler=transaction`` to the URL). The connection is discarded.
    """


class InvalidArgumentError(SessionDBError, ValueError):
    """An argument sessiondb cannot use; the message says what it accepts."""


class ArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type."""


class InvalidIdError(InvalidArgumentError):
    """An ``app_name``, ``user_id`` or ``session_id`` is empty, overlong, unprintable or no str."""


class InvalidStateError(InvalidArgumentError):
    """State that JSON cannot hold faithfully; the message names the key path."""


class StateTypeError(InvalidStateError, TypeError):
    """State holding a value of a type JSON has no form for (set, bytes, object, non-str key)."""


class InvalidCursorError(InvalidArgumentError):
    """A ``list_sessions`` cursor that is malformed or belongs to a listing in another order."""


class InvalidRecordError(InvalidArgumentError):
    """An import record that does not have sessiondb's export format."""


class AmbiguousSessionError(InvalidArgumentError):
    """A call named a session by id alone, and several users (or apps) have a session with
    that id: ids are per app and user. Pass ``app_name`` and ``user_id`` to say whose."""


class SessionNotFoundError(SessionDBError, LookupError):
    """No session with that id (or it belongs to another app or user)."""


class SessionExistsError(SessionDBError):
    """``create_session`` was given a ``session_id`` that this app and user already have."""


class StaleSessionError(SessionDBError):
    """The session changed since it was read: its version is no longer the expected one."""

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ConflictError(StaleSessionError):
    """The write lost to concurrent transactions on every attempt; nothing was written.

    A deadlock (MySQL/MariaDB 1213, PostgreSQL 40P01), a serialization failure (40001) or a
    Galera certification conflict rolls the whole transaction back, so sessiondb runs the
    operation again, from the start, up to ``conflict_retries`` times with jittered
    exponential backoff. This is raised when those attempts ran out too (``attempts`` says
    how many were made). It is a :class:`StaleSessionError`: the session kept changing under
    the write, and calling again later is safe.
    """

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class SchemaError(SessionDBError):
    """The database schema is missing, older than this library expects, or newer than it knows."""


class DatabaseError(SessionDBError):
    """A database error that has no more specific meaning; the driver's error is ``__cause__``."""


class DatabaseUnavailableError(DatabaseError, ConnectionError):
    """The database cannot be reached (server down, wrong host or port, timeout, bad file path)."""


class AuthenticationError(DatabaseError):
    """The server refused the credentials (user or password): retrying will not help.

    The message names the user, host and port, never the password.
    """


class UnexpectedResultError(DatabaseError):
    """The database answered a statement with something that is not that statement's result:
    a write changed another number of rows than asked, returned another version or another
    shape, or a transaction did not begin or end. It never happens on a sound connection; a
    misconfigured pooler can cause it. Nothing is acknowledged, the connection is discarded,
    and a transaction that was open is rolled back; a single-statement write may or may not
    have been applied: read the session to find out.
    """


class OutcomeUnknownError(DatabaseUnavailableError):
    """The connection died after a write was sent: it may or may not have been applied.

    sessiondb never repeats such a write by itself (an increment or an event append would be
    applied twice). Read the session to find out, or repeat an ``append_event`` with the same
    ``event_id``, which stores the event at most once.
    """


class ReadOnlyDatabaseError(DatabaseUnavailableError):
    """A write reached a server that accepts no writes: a hot standby, or a demoted primary.

    The server refused the statement, so it was not applied. sessiondb drops the connection and
    runs the operation once more on a new one (which, with every host listed and
    ``target_session_attrs=read-write``, is the primary); this error means that one landed on
    a read-only server too: the URL names no primary that is up.
    """
