"""The plain data objects sessiondb returns. No I/O, no SQLAlchemy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Session"]


@dataclass(slots=True, eq=True)
class Session:
    """A snapshot of one stored session.

    It is detached: changing ``state`` (or any field) never changes what is stored. Write with
    ``update_session_state`` (or the partial-update methods) instead.
    """

    id: str
    app_name: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    state: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The session as a dict of plain values (datetimes stay datetimes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Rebuild a session from :meth:`to_dict` output."""
        return cls(**data)
