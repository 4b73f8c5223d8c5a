"""A small chat API on sessiondb: conversations are sessions, messages are events.

Run it from the repository root:

    pip install -e '.[postgresql]' fastapi uvicorn
    SESSIONDB_URL=postgresql://app@db.internal/chat uvicorn examples.fastapi_app.app:app

Settings come from the environment (`Settings.from_env`): the database URL (`SESSIONDB_URL`,
else `DATABASE_URL`, else `sqlite:///./chat.db`), pool and timeout options. One
`AsyncSessionStore` is opened in the app's lifespan, closed at shutdown, and handed to the
endpoints by a dependency. sessiondb's errors map to HTTP statuses in one place
(`install_error_handlers`):

- 404: unknown conversation, or another user's (`get_session` returns None for both);
- 409: the body's `expected_version` is stale, or the write lost to concurrent writers;
- 412: the `If-Match` precondition failed (RFC 9110);
- 422: state, ids or cursors sessiondb refuses;
- 503 with `Retry-After`: the database is unreachable, refuses our credentials, or its schema
  is not this app's (nothing was written: retrying later is safe);
- 504: the connection died after a write was sent, so it may or may not have been applied
  (`OutcomeUnknownError`): not safe to repeat blindly.

`/healthz` (liveness, no database) and `/readyz` (database reachable, schema current) serve
load balancers and Kubernetes probes. docs/fastapi.md explains each choice.

Messages are stored as `{"role": ..., "content": text}` events, the OpenAI Responses input
format, so `sessiondb.openai_agents.SessiondbSession` (same app name and user) can continue a
conversation started here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response, status
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sessiondb import (
    SCHEMA_HEAD,
    AsyncSessionStore,
    Event,
    InvalidArgumentError,
    InvalidStateError,
    Session,
    SessionNotFoundError,
    StaleSessionError,
)
from sessiondb.errors import (
    AuthenticationError,
    ConflictError,
    DatabaseUnavailableError,
    OutcomeUnknownError,
    SchemaError,
    SessionDBError,
)

APP_NAME = "fastapi-chat"
DEFAULT_URL = "sqlite:///./chat.db"
COUNTER = "turns"
"""The state key counting the messages users posted; each post takes the next number."""
NO_SUCH_VERSION = 2**63 - 1
"""A version no conversation reaches: a write expecting it stores nothing new."""
TURN_ATTEMPTS = 50
"""How often a post reads the counter again after a concurrent post took its number."""

log = logging.getLogger("examples.fastapi_app")


# -- settings --------------------------------------------------------------------------------------


def _seconds(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = env.get(name)
    if raw is None:
        return default
    value = float(raw) if raw.strip() else 0.0
    return value if value > 0 else None  # "0" or "": no limit


@dataclass(frozen=True)
class Settings:
    """What the app reads from the environment (names in `from_env`)."""

    url: str = DEFAULT_URL
    pool_size: int = 10
    """Connections each worker process keeps (up to 3 times this under load)."""
    pool_timeout: float = 10.0
    """Seconds a request waits for a free connection before failing."""
    connect_timeout: float = 5.0
    """Seconds to reach the server: an outage fails requests fast instead of piling them up."""
    statement_timeout: float | None = 30.0
    """Seconds a statement may run (None: no limit; needed with `?pooler=transaction`)."""
    auto_migrate: bool = True
    """Create or upgrade the schema at startup (else run `sessiondb migrate` when deploying)."""
    retry_after: int = 5
    """Seconds a 503 tells clients to wait (`Retry-After`)."""
    ready_timeout: float = 2.0
    """Seconds `/readyz` waits for the database before answering 503."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, url: str | None = None) -> Settings:
        """`SESSIONDB_URL` (else `DATABASE_URL`), `SESSIONDB_POOL_SIZE`,
        `SESSIONDB_POOL_TIMEOUT`, `SESSIONDB_CONNECT_TIMEOUT`, `SESSIONDB_STATEMENT_TIMEOUT`
        (0: none), `SESSIONDB_AUTO_MIGRATE` (1/0), `SESSIONDB_RETRY_AFTER`,
        `SESSIONDB_READY_TIMEOUT`; `url` overrides the environment's."""
        env = os.environ if env is None else env
        url = url or env.get("SESSIONDB_URL") or env.get("DATABASE_URL") or DEFAULT_URL
        if url.startswith("postgres://"):  # Heroku, Render, Supabase write it so
            url = "postgresql://" + url.removeprefix("postgres://")
        d = cls()
        return cls(
            url=url,
            pool_size=int(env.get("SESSIONDB_POOL_SIZE", d.pool_size)),
            pool_timeout=_seconds(env, "SESSIONDB_POOL_TIMEOUT", d.pool_timeout) or d.pool_timeout,
            connect_timeout=(
                _seconds(env, "SESSIONDB_CONNECT_TIMEOUT", d.connect_timeout) or d.connect_timeout
            ),
            # a transaction-mode pooler passes no connection settings: no timeout unless asked
            statement_timeout=_seconds(
                env,
                "SESSIONDB_STATEMENT_TIMEOUT",
                None if "pooler=transaction" in url else d.statement_timeout,
            ),
            auto_migrate=env.get("SESSIONDB_AUTO_MIGRATE", "1").strip().lower()
            not in ("0", "false", "no", "off"),
            retry_after=int(env.get("SESSIONDB_RETRY_AFTER", d.retry_after)),
            ready_timeout=(
                _seconds(env, "SESSIONDB_READY_TIMEOUT", d.ready_timeout) or d.ready_timeout
            ),
        )

    def open_store(self) -> AsyncSessionStore:
        """The store these settings describe (it connects on first use)."""
        return AsyncSessionStore(
            self.url,
            tz_aware=True,
            auto_migrate=self.auto_migrate,
            pool_size=self.pool_size,
            connect_timeout=self.connect_timeout,
            statement_timeout=self.statement_timeout,
            engine_options={"pool_timeout": self.pool_timeout},
        )


# -- wire models -----------------------------------------------------------------------------------


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=256)
    state: dict[str, Any] = Field(default_factory=dict)


class Conversation(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Changes with every write; the `ETag` header holds it.")
    turns: int = Field(description="How many messages users posted.")
    state: dict[str, Any]


class Message(BaseModel):
    seq: int
    role: str
    text: str
    created_at: datetime


class ConversationDetail(Conversation):
    messages: list[Message]


class ConversationPage(BaseModel):
    items: list[Conversation]
    next_cursor: str | None


class NewMessage(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)
    expected_version: int | None = Field(
        default=None,
        ge=1,
        description="Refuse with 409 unless the conversation is still at this version.",
    )


class Exchange(BaseModel):
    message: Message
    reply: Message
    turn: int = Field(description="This message's number in the conversation (distinct).")
    version: int


class StatePatch(BaseModel):
    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    expected_version: int | None = Field(
        default=None,
        ge=1,
        description="Refuse with 409 unless the conversation is still at this version.",
    )


class StateOut(BaseModel):
    version: int
    state: dict[str, Any]


class ErrorBody(BaseModel):
    """A refusal, explained."""

    detail: str


class VersionConflict(BaseModel):
    """A write refused because the conversation is no longer at the version the client named."""

    detail: str
    expected_version: int | None = Field(description="The version the request named.")
    current_version: int | None = Field(description="The conversation's version now.")


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class InvalidInput(BaseModel):
    """A list of issues from request validation, or one sentence when sessiondb refuses a
    value (state JSON cannot hold, an overlong id, a foreign cursor)."""

    detail: str | list[ValidationIssue]


class Unavailable(BaseModel):
    """The database cannot serve the request now; nothing was written. Retry after
    `retry_after` seconds (also in the `Retry-After` header)."""

    detail: str
    retry_after: int


class OutcomeUnknown(BaseModel):
    """The connection to the database died after the write was sent: it may or may not have
    been applied. Read the conversation before repeating the request."""

    detail: str
    outcome: Literal["unknown"] = "unknown"


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether this instance can serve requests, and if not, why."""

    status: Literal["ready", "unavailable"]
    database: str = Field(description="`ok`, or why it cannot be used.")
    schema_revision: str | None = Field(description="The database's sessiondb schema revision.")
    expected_revision: str = Field(description="The revision this app needs.")


def conversation(session: Session) -> Conversation:
    return Conversation(
        id=session.id,
        title=session.title,
        created_at=session.created_at,
        updated_at=session.updated_at,
        version=session.version,
        turns=int(session.state.get(COUNTER, 0)),
        state=session.state,
    )


def message(event: Event) -> Message:
    content = event.content if isinstance(event.content, dict) else {}
    return Message(
        seq=event.seq,
        role=event.author,
        text=str(content.get("content", "")),
        created_at=event.created_at,
    )


def bot_reply(text: str, turn: int) -> str:
    """The canned bot: a real app awaits its model or agent here (never a blocking call)."""
    return f"You said {text!r} (message #{turn}). Tell me more!"


# -- OpenAPI: the error responses each endpoint may give ----------------------------------------

_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_ETAG = {"description": "The conversation's current version, quoted.", "schema": {"type": "string"}}
R404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such conversation, or another user's."}
}
R409: dict[int | str, dict[str, Any]] = {
    409: {
        "model": VersionConflict,
        "description": "`expected_version` is stale, or concurrent writers won every attempt.",
        "headers": {"ETag": _ETAG},
    }
}
R412: dict[int | str, dict[str, Any]] = {
    412: {
        "model": VersionConflict,
        "description": "The `If-Match` precondition failed: the conversation changed.",
        "headers": {"ETag": _ETAG},
    }
}
R422: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidInput, "description": "A request or value that cannot be used."}
}
R503: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Unavailable,
        "description": "The database is unavailable; nothing was written. Retry later.",
        "headers": {"Retry-After": _RETRY_AFTER},
    }
}
R504: dict[int | str, dict[str, Any]] = {
    504: {
        "model": OutcomeUnknown,
        "description": "The write may or may not have been applied: read before repeating it.",
    }
}
READS = {**R422, **R503}
WRITES = {**R404, **R409, **R412, **R422, **R503, **R504}


# -- dependencies ----------------------------------------------------------------------------------


def get_store(request: Request) -> AsyncSessionStore:
    """The store opened by the lifespan."""
    store: AsyncSessionStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_user(x_user_id: Annotated[str, Header(min_length=1, max_length=128)]) -> str:
    """The caller's user id (replace with your authentication)."""
    return x_user_id


@dataclass(frozen=True)
class IfMatch:
    """A parsed `If-Match` header: `*`, or the versions its strong entity tags name."""

    any: bool
    versions: frozenset[int]

    def expect(self, session: Session) -> int | None:
        """The version to write with, or `PreconditionFailedError` (RFC 9110 13.1.1: strong
        comparison, so a weak tag `W/"3"` never matches)."""
        if self.any:
            return None  # the conversation exists: that is all `*` asks
        if session.version in self.versions:
            return session.version
        raise PreconditionFailedError(
            expected=min(self.versions, default=None), actual=session.version
        )


_TAG = re.compile(r'\s*(?:(\*)|(W/)?"([\x21\x23-\x7e]*)")\s*(?:,|$)')


def parse_if_match(value: str) -> IfMatch:
    """`*` or a comma-separated list of entity tags (`"3"`, `W/"3"`); 400 for anything else."""
    pos, star, versions = 0, False, set()
    value = value.strip()
    while pos < len(value):
        found = _TAG.match(value, pos)
        if found is None or found.end() == pos:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST,
                'If-Match must be * or entity tags as the ETag header sends them ("3")',
            )
        pos = found.end()
        star = star or found.group(1) is not None
        weak, tag = found.group(2), found.group(3)
        if tag is not None and not weak and tag.isdigit() and tag.isascii():
            versions.add(int(tag))
    if not value:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "If-Match is empty")
    return IfMatch(any=star, versions=frozenset(versions))


def if_match(
    if_match: Annotated[
        str | None,
        Header(
            description='`"3"` (the `ETag` sent), a list, or `*`. Weak tags (`W/"3"`) never '
            "match (RFC 9110 strong comparison).",
        ),
    ] = None,
) -> IfMatch | None:
    return None if if_match is None else parse_if_match(if_match)


Store = Annotated[AsyncSessionStore, Depends(get_store)]
Key = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=64,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): a repeated request with the same key returns "
        "the first one's exchange instead of posting again.",
    ),
]
UserId = Annotated[str, Depends(get_user)]
Precondition = Annotated[IfMatch | None, Depends(if_match)]


class PreconditionFailedError(Exception):
    """An `If-Match` that does not match the conversation's version: 412."""

    def __init__(self, *, expected: int | None, actual: int | None) -> None:
        super().__init__(f"version {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


async def owned(store: AsyncSessionStore, user_id: str, conversation_id: str) -> Session:
    """The caller's conversation, or 404 (missing and foreign look the same)."""
    session = await store.get_session(APP_NAME, user_id, conversation_id)
    if session is None:
        raise SessionNotFoundError(f"no conversation {conversation_id!r}")
    return session


def expected_version(
    session: Session, cond: IfMatch | None, body_version: int | None
) -> int | None:
    """The version a write must find: from `If-Match` (else 412), then the body (else 409)."""
    version = cond.expect(session) if cond is not None else None
    if body_version is not None and body_version != session.version:
        raise StaleSessionError(
            "stale expected_version", expected=body_version, actual=session.version
        )
    return version if version is not None else body_version


def check_client_keys(keys: list[str]) -> None:
    """Clients may not write `app:`/`user:` state (shared with other conversations)."""
    scoped = [k for k in keys if k.startswith(("app:", "user:", "temp:"))]
    if scoped:
        raise InvalidStateError(f"clients may not write scoped state keys {scoped}")


# -- errors ----------------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI) -> None:
    """Map sessiondb's errors to HTTP statuses, once for every endpoint."""

    def retry_after(request: Request) -> int:
        settings: Settings | None = getattr(request.app.state, "settings", None)
        return (settings or Settings()).retry_after

    def versions(status_code: int, detail: str, exp: int | None, act: int | None) -> JSONResponse:
        body = VersionConflict(detail=detail, expected_version=exp, current_version=act)
        headers = {} if act is None else {"ETag": f'"{act}"'}
        return JSONResponse(body.model_dump(), status_code, headers=headers)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "conversation not found"}, status.HTTP_404_NOT_FOUND)

    async def precondition_failed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PreconditionFailedError)
        detail = "If-Match does not match: the conversation changed; reload it"
        return versions(status.HTTP_412_PRECONDITION_FAILED, detail, exc.expected, exc.actual)

    async def stale(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StaleSessionError)
        if isinstance(exc, ConflictError):
            detail = "too many concurrent writes to this conversation; retry"
        else:
            detail = "the conversation changed; reload it and retry"
        return versions(status.HTTP_409_CONFLICT, detail, exc.expected, exc.actual)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        # the message names the host (and the user, for a refused login): log it, never send it
        log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
        if isinstance(exc, SchemaError):
            detail = "the database schema is not this service's version; retry later"
        else:
            detail = "the database is unavailable; nothing was written, retry later"
        seconds = retry_after(request)
        body = Unavailable(detail=detail, retry_after=seconds)
        return JSONResponse(
            body.model_dump(),
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(seconds)},
        )

    async def outcome_unknown(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s: write outcome unknown: %r", request.method, request.url.path, exc)
        body = OutcomeUnknown(
            detail="the database connection was lost after the write was sent: it may or may "
            "not have been applied; read the conversation before repeating the request (a post "
            "repeated with the same Idempotency-Key is safe)"
        )
        return JSONResponse(body.model_dump(), status.HTTP_504_GATEWAY_TIMEOUT)

    app.add_exception_handler(SessionNotFoundError, not_found)
    app.add_exception_handler(PreconditionFailedError, precondition_failed)
    app.add_exception_handler(StaleSessionError, stale)  # ConflictError included
    # InvalidStateError, StateTypeError, InvalidIdError, InvalidCursorError...
    app.add_exception_handler(InvalidArgumentError, invalid)
    # the most specific class wins: OutcomeUnknownError is a DatabaseUnavailableError
    for error in (DatabaseUnavailableError, AuthenticationError, SchemaError):
        app.add_exception_handler(error, unavailable)
    app.add_exception_handler(OutcomeUnknownError, outcome_unknown)


# -- the app ---------------------------------------------------------------------------------------


DESCRIPTION = """\
Conversations are sessiondb sessions, messages are events. Every request names its user in
`X-User-Id` (a stand-in for authentication).

Writes take `If-Match` with the `ETag` a response sent (`"3"`): a conversation that changed
since gives **412**. A database outage gives **503** with `Retry-After` (nothing was written);
a write whose outcome is unknown gives **504** (read before repeating it).
"""


def create_app(url: str | None = None, *, settings: Settings | None = None) -> FastAPI:
    """The chat API. Settings are read from the environment when the app starts, unless
    given; `url` overrides the environment's database URL."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings.from_env(url=url)
        store = config.open_store()
        app.state.settings, app.state.store = config, store
        app.state.migration = None
        try:
            if config.auto_migrate:
                try:
                    await store.migrate()
                except (DatabaseUnavailableError, AuthenticationError) as exc:
                    # start anyway: /readyz says why, and upgrades the schema once it can
                    log.warning("database unavailable at startup: %r", exc)
            yield
        finally:
            migration: asyncio.Task[str] | None = app.state.migration
            if migration is not None and not migration.done():
                await asyncio.wait([migration])  # DDL is let finish, never cancelled
            await store.close()

    def migration(app: FastAPI, store: AsyncSessionStore) -> asyncio.Task[str]:
        """The schema upgrade /readyz started, or a new one: one at a time, and never
        cancelled by a probe's timeout (MySQL's DDL cannot be rolled back half-way)."""
        task: asyncio.Task[str] | None = app.state.migration
        if task is None or task.done():
            task = app.state.migration = asyncio.ensure_future(store.migrate())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
        return task

    app = FastAPI(
        title="sessiondb chat",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=R503,  # every endpoint but /healthz may meet an outage
    )
    install_error_handlers(app)

    @app.get("/healthz", tags=["probes"], responses={503: {"description": "Never sent."}})
    async def healthz() -> Liveness:
        """Liveness: the process answers. It never touches the database, so an outage does not
        get every instance restarted."""
        return Liveness()

    @app.get("/readyz", tags=["probes"], responses={503: {"model": Readiness}})
    async def readyz(store: Store, request: Request) -> JSONResponse:
        """Readiness: the database answers and its schema is the one this app needs (with
        auto-migration on, an older schema is upgraded here). 503 with the reason otherwise."""
        config = get_settings(request)
        revision: str | None = None

        async def check() -> str | None:
            nonlocal revision
            revision = await store.current_revision()
            if revision != SCHEMA_HEAD and config.auto_migrate:
                revision = await asyncio.shield(migration(request.app, store))
            return revision

        try:
            await asyncio.wait_for(check(), config.ready_timeout)
            if revision == SCHEMA_HEAD:
                database = "ok"
            else:
                database = f"schema at revision {revision!r}, not {SCHEMA_HEAD!r}: " + (
                    "run `sessiondb migrate`"
                    if not config.auto_migrate
                    else "newer than this app's sessiondb"
                )
        except asyncio.TimeoutError:
            if request.app.state.migration is not None and not request.app.state.migration.done():
                database = "the schema is being upgraded"
            else:
                database = f"no answer within {config.ready_timeout:g} s"
        except AuthenticationError:
            database = "the server refused the credentials"
        except DatabaseUnavailableError:
            database = "unreachable"
        except SchemaError:
            database = f"schema newer than {SCHEMA_HEAD!r}: upgrade this app's sessiondb"
        except SessionDBError as exc:
            database = f"error: {type(exc).__name__}"
        ready = database == "ok"
        body = Readiness(
            status="ready" if ready else "unavailable",
            database=database,
            schema_revision=revision,
            expected_revision=SCHEMA_HEAD,
        )
        headers = {} if ready else {"Retry-After": str(config.retry_after)}
        code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(body.model_dump(), code, headers=headers)

    @app.post(
        "/conversations",
        status_code=status.HTTP_201_CREATED,
        responses={**R422, **R504},
        tags=["conversations"],
    )
    async def create_conversation(
        body: NewConversation, store: Store, user_id: UserId, response: Response
    ) -> Conversation:
        """Start a conversation, with a title and initial state. `Location` and `ETag` name it."""
        check_client_keys(list(body.state))
        state = {**body.state, COUNTER: 0}
        session = await store.create_session(APP_NAME, user_id, state, title=body.title)
        response.headers["ETag"] = f'"{session.version}"'
        response.headers["Location"] = f"/conversations/{session.id}"
        return conversation(session)

    @app.get("/conversations", responses=READS, tags=["conversations"])
    async def list_conversations(
        store: Store,
        user_id: UserId,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> ConversationPage:
        """Your conversations, the last updated first; pass `next_cursor` back for the next page."""
        page = await store.list_sessions(APP_NAME, user_id, limit=limit, cursor=cursor)
        return ConversationPage(items=[conversation(s) for s in page], next_cursor=page.next_cursor)

    @app.get(
        "/conversations/{conversation_id}", responses={**R404, **READS}, tags=["conversations"]
    )
    async def resume_conversation(
        conversation_id: str,
        store: Store,
        user_id: UserId,
        response: Response,
        messages: Annotated[int, Query(ge=0, le=500)] = 50,
    ) -> ConversationDetail:
        """The conversation with its last `messages` messages, oldest first."""
        session = await store.get_session(
            APP_NAME, user_id, conversation_id, recent_events=messages
        )
        if session is None:
            raise SessionNotFoundError(conversation_id)
        response.headers["ETag"] = f'"{session.version}"'
        return ConversationDetail(
            **conversation(session).model_dump(),
            messages=[message(e) for e in session.events or []],
        )

    @app.post(
        "/conversations/{conversation_id}/messages",
        status_code=status.HTTP_201_CREATED,
        responses=WRITES,
        tags=["conversations"],
    )
    async def post_message(
        conversation_id: str,
        body: NewMessage,
        store: Store,
        user_id: UserId,
        cond: Precondition,
        response: Response,
        key: Key = None,
    ) -> Exchange:
        """Post a message and get the bot's reply. Each message takes the next turn number,
        distinct even when several are posted at once. With an `Idempotency-Key`, repeating
        the request (after a 504, say) returns the first exchange instead of posting again."""
        content = {"role": "user", "content": body.text}

        async def send(turn: int, version: int) -> Event:
            # the message and its turn number in one write, made only if the conversation is
            # still at `version`: two concurrent posts can never take the same number
            return await store.append_event(
                conversation_id,
                "user",
                content,
                state_delta={COUNTER: turn},
                expected_version=version,
                event_id=key,  # stored at most once per conversation
                app_name=APP_NAME,
                user_id=user_id,
            )

        # `*` asks only that the conversation exists: its posts retry like unguarded ones
        guarded = (cond is not None and not cond.any) or body.expected_version is not None
        for attempt in range(TURN_ATTEMPTS):
            session = await owned(store, user_id, conversation_id)
            turn = int(session.state.get(COUNTER, 0)) + 1
            try:
                version = expected_version(session, cond, body.expected_version)
            except (PreconditionFailedError, StaleSessionError) as refused:
                if key is None:
                    raise
                try:  # a repeat of a post already made gets its stored message back
                    sent = await send(turn, NO_SUCH_VERSION)
                except StaleSessionError:
                    raise refused from None
                break
            try:
                sent = await send(turn, session.version)
                break
            except StaleSessionError as exc:
                if guarded:  # the client named a version: no retry
                    if cond is not None and not cond.any:
                        raise PreconditionFailedError(expected=version, actual=exc.actual) from exc
                    raise
                # another post took this number: read again (a short random pause spreads
                # the retries of many concurrent posts)
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        else:
            raise ConflictError(f"{TURN_ATTEMPTS} concurrent posts won", attempts=TURN_ATTEMPTS)
        if sent.content != content:
            raise InvalidArgumentError("this Idempotency-Key was used for another message")
        turn = int((sent.state_delta or {}).get(COUNTER, turn))  # a repeat: the first's turn
        # the reply is produced outside any transaction (a model call may take seconds), then
        # appended: concurrent exchanges may interleave in the history
        text = bot_reply(body.text, turn)
        reply = await store.append_event(
            conversation_id,
            "assistant",
            {"role": "assistant", "content": text},
            event_id=None if key is None else f"{key}:reply",
            app_name=APP_NAME,
            user_id=user_id,
        )
        now = await owned(store, user_id, conversation_id)
        response.headers["ETag"] = f'"{now.version}"'
        return Exchange(message=message(sent), reply=message(reply), turn=turn, version=now.version)

    @app.patch("/conversations/{conversation_id}/state", responses=WRITES, tags=["conversations"])
    async def patch_state(
        conversation_id: str,
        body: StatePatch,
        store: Store,
        user_id: UserId,
        cond: Precondition,
        response: Response,
    ) -> StateOut:
        """Set and remove state keys (`app:`, `user:` and `temp:` keys are refused)."""
        check_client_keys([*body.set, *body.remove])
        if COUNTER in body.set or COUNTER in body.remove:
            raise InvalidStateError(f"{COUNTER!r} is kept by the server")
        session = await owned(store, user_id, conversation_id)
        version = expected_version(session, cond, body.expected_version)
        try:
            await store.patch_state(
                conversation_id,
                body.set,
                body.remove,
                expected_version=version,
                app_name=APP_NAME,
                user_id=user_id,
            )
        except StaleSessionError as exc:
            if cond is not None and body.expected_version is None:
                raise PreconditionFailedError(expected=version, actual=exc.actual) from exc
            raise
        session = await owned(store, user_id, conversation_id)
        response.headers["ETag"] = f'"{session.version}"'
        return StateOut(version=session.version, state=session.state)

    @app.delete(
        "/conversations/{conversation_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses={**R404, **R422, **R504},
        tags=["conversations"],
    )
    async def delete_conversation(conversation_id: str, store: Store, user_id: UserId) -> None:
        """Delete a conversation and its messages."""
        if not await store.delete_session(conversation_id, app_name=APP_NAME, user_id=user_id):
            raise SessionNotFoundError(conversation_id)

    return app


app = create_app()
