"""The workload's data, generated from one seed: same data and order for every contender.

Everything here is plain data (dicts, lists, ints): contenders never see how it was made, and a
worker process rebuilds the identical workload from ``(sizes, seed)`` alone.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, field
from typing import Any

APP_NAME = "bench_app"
CONV_USER = "conv-user"

_WORDS = (
    "agent",
    "archive",
    "balance",
    "beacon",
    "bridge",
    "cache",
    "canvas",
    "cipher",
    "cloud",
    "compass",
    "copper",
    "delta",
    "ember",
    "engine",
    "fabric",
    "falcon",
    "filter",
    "forest",
    "galaxy",
    "garden",
    "harbor",
    "hollow",
    "island",
    "journal",
    "kernel",
    "ladder",
    "lantern",
    "ledger",
    "marble",
    "meadow",
    "mirror",
    "motion",
    "nebula",
    "needle",
    "orbit",
    "parcel",
    "pepper",
    "pillar",
    "planet",
    "prism",
    "quartz",
    "radar",
    "raven",
    "ribbon",
    "river",
    "rocket",
    "saddle",
    "signal",
    "silver",
    "socket",
    "spiral",
    "summit",
    "tablet",
    "thunder",
    "timber",
    "token",
    "tunnel",
    "valley",
    "velvet",
    "vector",
    "window",
    "winter",
    "yonder",
    "zephyr",
)
_LOCALES = ("de-DE", "en-US", "en-GB", "fr-FR", "ja-JP", "pt-BR", "es-ES", "it-IT")
_ZONES = ("Asia/Tokyo", "Europe/Berlin", "America/New_York", "Europe/London", "UTC")
_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash")
_TOOLS = ("search", "calculator", "calendar", "weather", "maps", "email")
_THEMES = ("dark", "light", "system")
_INTENTS = ("greeting", "question", "booking", "complaint", "feedback", "smalltalk", "refund")


@dataclass(frozen=True)
class Sizes:
    """The shape of one workload (the flags of ``python -m benchmarks``)."""

    sessions: int = 1000
    users: int = 100
    updates: int = 2000
    gets: int = 1000
    lists: int = 1000
    turns: int = 200
    warmup: int = 50

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes for CI: finishes in seconds per contender."""
        return cls(sessions=40, users=8, updates=40, gets=40, lists=40, turns=10, warmup=5)

    def check(self) -> None:
        """Raise ``SystemExit`` with the flag's name when a size is out of range."""
        for name, value in self.to_dict().items():
            if value < 0:
                raise SystemExit(f"--{name} must not be negative")
        if self.users < 1 or self.sessions < 1:
            raise SystemExit("--sessions and --users must be at least 1")

    def for_counting(self) -> Sizes:
        """The short workload of the counting pass (round trips or statements per op)."""
        n = min(self.sessions, 20)
        return Sizes(
            sessions=n,
            users=max(1, min(self.users, 4)),
            updates=min(self.updates, 2 * n),
            gets=min(self.gets, 20),
            lists=min(self.lists, 20),
            turns=min(self.turns, 6),
            warmup=min(self.warmup, 10),
        )


@dataclass
class CrudData:
    """The CRUD phases: who owns each session, its initial state, and the op sequences."""

    user_ids: list[str]  # session i belongs to user_ids[i]
    states: list[dict[str, Any]]  # initial state of session i
    updates: list[tuple[int, dict[str, Any]]]  # (session index, 2-key delta), shuffled
    gets: list[int]  # session indices, uniform
    lists: list[str]  # user ids, uniform
    deletes: list[int]  # every session index once, shuffled
    all_users: list[str] = field(default_factory=list)

    def expected_states(self) -> list[dict[str, Any]]:
        """The state each session must hold after the update phase (dict.update semantics)."""
        out = copy.deepcopy(self.states)
        for index, delta in self.updates:
            out[index].update(delta)
        return out


@dataclass
class Workload:
    """Everything one contender is given: the warm-up, the timed phases, the conversation."""

    sizes: Sizes
    seed: int
    warmup: CrudData
    crud: CrudData
    messages: list[tuple[dict[str, str], dict[str, str]]]  # (user, assistant) per turn
    check_sample: list[int]  # sessions whose full state is verified after the list phase


def _text(rng: random.Random, length: int) -> str:
    """Words from the vocabulary, cut to exactly ``length`` characters."""
    parts: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS)
        parts.append(word)
        size += len(word) + 1
    text = " ".join(parts)[:length]
    return text[:-1] + "x" if text.endswith(" ") else text


def _state(rng: random.Random, user_id: str) -> dict[str, Any]:
    """An initial session state of about 330 bytes (see the spec's example)."""
    number = user_id.rsplit("-", 1)[-1]
    return {
        "user": {
            "id": user_id,
            "name": f"User {number}",
            "locale": rng.choice(_LOCALES),
            "tz": rng.choice(_ZONES),
        },
        "prefs": {
            "model": rng.choice(_MODELS),
            "temperature": round(rng.uniform(0.0, 1.0), 2),
            "max_output_tokens": rng.choice((256, 512, 1024, 2048)),
            "tools": rng.sample(_TOOLS, 3),
            "theme": rng.choice(_THEMES),
        },
        "counters": {"message_count": 0, "tokens_in": 0, "tokens_out": 0},
        "flags": {"onboarded": rng.random() < 0.8, "beta": rng.random() < 0.2},
        "topic": _text(rng, 40),
    }


def _delta(rng: random.Random, serial: int) -> dict[str, Any]:
    """A 2-key delta with non-object values (json_patch, jsonb || and dict.update agree)."""
    intent = rng.choice(_INTENTS)
    return {"last_intent": (intent + "-" + _text(rng, 16))[:16], "turn": serial}


def _crud(rng: random.Random, sizes: Sizes, prefix: str, updates: int, gets: int) -> CrudData:
    users = [f"{prefix}-{u:04d}" for u in range(sizes.users)]
    owners = [users[i % sizes.users] for i in range(sizes.sessions)]
    states = [_state(rng, owner) for owner in owners]
    rounds = -(-updates // sizes.sessions) if sizes.sessions else 0
    order = [i for _ in range(rounds) for i in range(sizes.sessions)][:updates]
    rng.shuffle(order)
    update_ops = [(index, _delta(rng, serial)) for serial, index in enumerate(order, 1)]
    get_ops = [rng.randrange(sizes.sessions) for _ in range(gets)] if sizes.sessions else []
    list_ops = [rng.choice(users) for _ in range(sizes.lists)]
    deletes = list(range(sizes.sessions))
    rng.shuffle(deletes)
    return CrudData(owners, states, update_ops, get_ops, list_ops, deletes, users)


def generate(sizes: Sizes, seed: int) -> Workload:
    """Build the whole workload deterministically from ``sizes`` and ``seed``."""
    sizes.check()
    rng = random.Random(f"sessiondb-bench:{seed}:crud")
    crud = _crud(rng, sizes, "user", sizes.updates, sizes.gets)
    w = sizes.warmup
    warm_sizes = Sizes(sessions=w, users=max(1, w // 10), updates=2 * w, gets=w, lists=w)
    warm_rng = random.Random(f"sessiondb-bench:{seed}:warmup")
    warm = _crud(warm_rng, warm_sizes, "warm", warm_sizes.updates, warm_sizes.gets)
    conv_rng = random.Random(f"sessiondb-bench:{seed}:conversation")
    messages = [
        (
            {"role": "user", "content": _text(conv_rng, 80)},
            {"role": "assistant", "content": _text(conv_rng, 240)},
        )
        for _ in range(sizes.turns)
    ]
    sample_rng = random.Random(f"sessiondb-bench:{seed}:check")
    sample = sorted(sample_rng.sample(range(sizes.sessions), min(20, sizes.sessions)))
    return Workload(sizes, seed, warm, crud, messages, sample)
