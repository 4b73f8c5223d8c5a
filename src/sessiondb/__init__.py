"""sessiondb: sessions of AI-agent and chat applications, kept in a real database.

SQLite, PostgreSQL and MySQL/MariaDB, with a sync (:class:`SessionStore`) and an async
(:class:`AsyncSessionStore`) front end over one core, and :class:`DatabaseSessionService`, the
API of the beginner's guide. Importing this package is cheap: SQLAlchemy and the drivers load
when the first store is created.
"""

from __future__ import annotations

from ._async_store import AsyncSessionStore
from ._service import DatabaseSessionService
from ._store import SessionStore
from .errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    DriverNotInstalledError,
    InvalidIdError,
    InvalidStateError,
    SchemaError,
    SessionDBError,
    SessionExistsError,
    SessionNotFoundError,
    StaleSessionError,
    StateTypeError,
)
from .models import Event, Session

__version__ = "0.1.0"

__all__ = [
    "AsyncSessionStore",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseSessionService",
    "DatabaseUnavailableError",
    "DriverNotInstalledError",
    "Event",
    "InvalidIdError",
    "InvalidStateError",
    "SchemaError",
    "Session",
    "SessionDBError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionStore",
    "StaleSessionError",
    "StateTypeError",
    "__version__",
]
