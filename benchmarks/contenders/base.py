"""The interface every contender implements, once sync and once async.

A contender gets plain data from the workload and returns whatever its library returns; the
harness keeps only the handles returned by ``create`` and drops every other result. All methods
except the six timed ones (``create``, ``update``, ``get``, ``list``, ``delete`` and the two
conversation halves) are untimed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..targets import Target

Handle = Any  # what create returned: the library's session object, or an id tuple


class ContenderBase:
    """What both flavours share: name, labels, and the facts the report needs."""

    name: ClassVar[str]
    backends: ClassVar[tuple[str, ...]] = ("sqlite", "postgresql", "mysql")
    requires: ClassVar[dict[str, tuple[str, ...]]] = {}  # backend -> importable modules
    is_async: ClassVar[bool] = False
    is_sessiondb: ClassVar[bool] = False
    # conversation variants this contender runs (see benchmarks/conversation.py)
    conversation_variants: ClassVar[tuple[str, ...]] = ("naive",)
    prefix = ""  # table prefix of contenders that take one (the harness may change it)
    baseline = False  # a NAME@before twin, running the baseline's sessiondb (set by the harness)

    def __init__(self, target: Target) -> None:
        self.target = target
        self.backend = target.backend
        self.notes: list[str] = []
        self.settings = ""  # e.g. "WAL + synchronous=FULL"
        self.update_mode = ""  # how an update is applied, for the report

    # untimed helpers the harness needs -----------------------------------------------------

    @staticmethod
    def session_id(handle: Handle) -> str:
        return str(handle.id)

    @staticmethod
    def user_of(handle: Handle) -> str:
        return str(handle.user_id)

    def state_of(self, got: Any) -> dict[str, Any] | None:
        """The state inside a ``get`` result (None: not found)."""
        return None if got is None else dict(got.state)

    def count_of(self, listed: Any) -> int:
        """How many sessions a ``list`` result holds."""
        return len(listed)

    def info(self) -> dict[str, Any]:
        return {"settings": self.settings, "update_mode": self.update_mode, "notes": self.notes}


class SyncContender(ContenderBase, ABC):
    """A contender with blocking calls."""

    @abstractmethod
    def setup(self) -> None:
        """Drop leftovers, open connections, create the schema (untimed)."""

    @abstractmethod
    def create(self, user_id: str, state: dict[str, Any]) -> Handle: ...

    @abstractmethod
    def update(self, handle: Handle, delta: dict[str, Any]) -> None: ...

    @abstractmethod
    def get(self, handle: Handle) -> Any: ...

    @abstractmethod
    def list(self, user_id: str) -> Any: ...

    @abstractmethod
    def delete(self, handle: Handle) -> None: ...

    @abstractmethod
    def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]:
        """Read the conversation session: (what conv_write needs, its state)."""

    @abstractmethod
    def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None: ...

    @abstractmethod
    def stored_bytes(self, handle: Handle) -> dict[str, int]:
        """Bytes the conversation session occupies: ``state`` and, if any, ``events``."""

    @abstractmethod
    def teardown(self) -> None:
        """Close connections and drop this contender's tables (untimed)."""


class AsyncContender(ContenderBase, ABC):
    """A contender whose calls are coroutines."""

    is_async = True

    @abstractmethod
    async def setup(self) -> None: ...

    @abstractmethod
    async def create(self, user_id: str, state: dict[str, Any]) -> Handle: ...

    @abstractmethod
    async def update(self, handle: Handle, delta: dict[str, Any]) -> None: ...

    @abstractmethod
    async def get(self, handle: Handle) -> Any: ...

    @abstractmethod
    async def list(self, user_id: str) -> Any: ...

    @abstractmethod
    async def delete(self, handle: Handle) -> None: ...

    @abstractmethod
    async def conv_read(self, handle: Handle) -> tuple[Any, dict[str, Any]]: ...

    @abstractmethod
    async def conv_write(self, handle: Handle, read: Any, delta: dict[str, Any]) -> None: ...

    @abstractmethod
    def stored_bytes(self, handle: Handle) -> dict[str, int]: ...

    @abstractmethod
    async def teardown(self) -> None: ...
