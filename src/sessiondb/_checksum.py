"""A backend-independent digest of exported records, to verify copies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["Checksum"]


class Checksum:
    """Order-independent SHA-256 over records, with JSON canonicalised (sorted keys)."""

    def __init__(self) -> None:
        self._acc = 0
        self.count = 0

    def add(self, record: dict[str, Any]) -> None:
        kept = dict(record)
        if kept.get("type") == "session":
            # what a copy must preserve; timestamps of events are kept, floats compared as JSON
            kept.pop("expires_at", None)
            kept["events"] = [
                {k: v for k, v in e.items() if k != "created_at"} for e in kept.get("events", [])
            ]
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(text.encode()).digest()
        self._acc = (self._acc + int.from_bytes(digest, "big")) % (1 << 256)
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self.count}:{self._acc:064x}"
