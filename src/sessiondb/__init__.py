"""sessiondb: sessions of AI-agent and chat applications, kept in a real database.

SQLite, PostgreSQL and MySQL/MariaDB, with a sync (:class:`SessionStore`) and an async
(:class:`AsyncSessionStore`) front end over one core, and :class:`DatabaseSessionService`, the
API of the beginner's guide. Importing this package is cheap: SQLAlchemy and the drivers load
when the first store is created.
"""

from __future__ import annotations

from ._async_store import AsyncSessionStore
from ._migrations import HEAD as SCHEMA_HEAD
from ._service import DatabaseSessionService
from ._store import SessionStore
from ._telemetry import Telemetry
from .errors import (
    AmbiguousSessionError,
    ArgumentTypeError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    InvalidArgumentError,
    InvalidCursorError,
    InvalidIdError,
    InvalidRecordError,
    InvalidStateError,
    OutcomeUnknownError,
    PoolerError,
    ReadOnlyDatabaseError,
    SchemaError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
    UnexpectedResultError,
)
from .models import AppStats, Event, ImportResult, Session, SessionList

__version__ = "0.1.0"

__all__ = [
    "AmbiguousSessionError",
    "AppStats",
    "ArgumentTypeError",
    "AsyncSessionStore",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseError",
    "DatabaseSessionService",
    "DatabaseUnavailableError",
    "DriverNotInstalledError",
    "Event",
    "ImportResult",
    "InvalidArgumentError",
    "InvalidCursorError",
    "InvalidIdError",
    "InvalidRecordError",
    "InvalidStateError",
    "OutcomeUnknownError",
    "PoolerError",
    "ReadOnlyDatabaseError",
    "SCHEMA_HEAD",
    "SchemaError",
    "Session",
    "SessionDBError",
    "SessionExistsError",
    "SessionList",
    "SessionNotFoundError",
    "SessionStore",
    "StaleSessionError",
    "StateTypeError",
    "Telemetry",
    "UnexpectedResultError",
    "__version__",
]
