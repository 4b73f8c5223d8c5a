"""A small chat API on sessiondb: conversations are sessions, messages are events.

Run it from the repository root::

    pip install -e . fastapi uvicorn
    SESSIONDB_URL=sqlite:///./chat.db uvicorn examples.fastapi_app.app:app --reload

Every request names its user in the ``X-User-Id`` header (stand-in for real authentication: put
your auth dependency there). One :class:`~sessiondb.AsyncSessionStore` is opened in the app's
lifespan and handed to the endpoints by a dependency. sessiondb's errors map to HTTP statuses in
one place (:func:`install_error_handlers`):

* 404: unknown session, or a session of another user (``get_session`` returns None for those,
  so nobody can tell another user's conversation from a missing one);
* 409: a stale write: the client sent ``If-Match: <version>`` (or ``expected_version``) and the
  conversation changed since (``StaleSessionError``);
* 422: state or ids sessiondb refuses (``InvalidStateError``, ``StateTypeError``,
  ``InvalidIdError``, ``InvalidCursorError``).

Messages are stored as ``{"role": ..., "content": text}`` events, the OpenAI Responses input
format, so ``sessiondb.openai_agents.SessiondbSession`` (same ``app_name`` and user) can
continue a conversation started here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sessiondb import (
    AsyncSessionStore,
    Event,
    InvalidCursorError,
    InvalidIdError,
    InvalidStateError,
    Session,
    SessionNotFoundError,
    StaleSessionError,
)

APP_NAME = "fastapi-chat"
DEFAULT_URL = "sqlite:///./chat.db"
COUNTER = "turns"
"""The state key counting the messages a user posted (kept with ``patch_state(increment=)``)."""


# -- wire models ---------------------------------------------------------------------------------


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=256)
    state: dict[str, Any] = Field(default_factory=dict)


class Conversation(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    turns: int
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
    expected_version: int | None = None
    """Like ``If-Match``: refuse (409) unless the conversation is still at this version."""


class Exchange(BaseModel):
    message: Message
    reply: Message
    version: int
    turns: int


class StatePatch(BaseModel):
    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    expected_version: int | None = None


class StateOut(BaseModel):
    version: int
    state: dict[str, Any]


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
    """The canned bot: a real app calls its model or agent here."""
    return f"You said {text!r} (message #{turn}). Tell me more!"


# -- dependencies --------------------------------------------------------------------------------


def get_store(request: Request) -> AsyncSessionStore:
    """The store opened by the lifespan."""
    store: AsyncSessionStore = request.app.state.store
    return store


def get_user(x_user_id: Annotated[str, Header(min_length=1)]) -> str:
    """The caller's user id (replace with your authentication)."""
    return x_user_id


def if_match(if_match: Annotated[str | None, Header()] = None) -> int | None:
    """The version in an ``If-Match`` header (``3``, ``"3"`` or ``W/"3"``), if any."""
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "If-Match must hold a version number")
    return int(value)


Store = Annotated[AsyncSessionStore, Depends(get_store)]
UserId = Annotated[str, Depends(get_user)]
IfMatch = Annotated[int | None, Depends(if_match)]


async def owned(store: AsyncSessionStore, user_id: str, conversation_id: str) -> Session:
    """The caller's conversation, or 404 (missing and foreign look the same)."""
    session = await store.get_session(APP_NAME, user_id, conversation_id)
    if session is None:
        raise SessionNotFoundError(f"no conversation {conversation_id!r}")
    return session


def expected(header: int | None, body: int | None) -> int | None:
    if header is not None and body is not None and header != body:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "If-Match and expected_version differ")
    return header if header is not None else body


def check_client_keys(keys: list[str]) -> None:
    """Clients may not write ``app:``/``user:`` state (shared with other conversations)."""
    scoped = [k for k in keys if k.startswith(("app:", "user:", "temp:"))]
    if scoped:
        raise InvalidStateError(f"clients may not write scoped state keys {scoped}")


# -- errors --------------------------------------------------------------------------------------


def install_error_handlers(app: FastAPI) -> None:
    """Map sessiondb's errors to HTTP statuses, once for every endpoint."""

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "conversation not found"}, status.HTTP_404_NOT_FOUND)

    async def stale(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StaleSessionError)
        body = {
            "detail": "the conversation changed; reload it and retry",
            "expected_version": exc.expected,
            "current_version": exc.actual,
        }
        headers = {} if exc.actual is None else {"ETag": f'"{exc.actual}"'}
        return JSONResponse(body, status.HTTP_409_CONFLICT, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    app.add_exception_handler(SessionNotFoundError, not_found)
    app.add_exception_handler(StaleSessionError, stale)
    # InvalidStateError covers StateTypeError, its subclass
    for error in (InvalidStateError, InvalidIdError, InvalidCursorError):
        app.add_exception_handler(error, invalid)


# -- the app -------------------------------------------------------------------------------------


def create_app(url: str | None = None) -> FastAPI:
    """The chat API on the database at ``url`` (default: env ``SESSIONDB_URL``, then
    ``sqlite:///./chat.db``), read when the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db_url = url or os.environ.get("SESSIONDB_URL", DEFAULT_URL)
        async with AsyncSessionStore(db_url, tz_aware=True) as store:
            app.state.store = store
            yield

    app = FastAPI(title="sessiondb chat", lifespan=lifespan)
    install_error_handlers(app)

    @app.post("/conversations", status_code=status.HTTP_201_CREATED)
    async def create_conversation(
        body: NewConversation, store: Store, user_id: UserId, response: Response
    ) -> Conversation:
        check_client_keys(list(body.state))
        state = {**body.state, COUNTER: 0}
        session = await store.create_session(APP_NAME, user_id, state, title=body.title)
        response.headers["ETag"] = f'"{session.version}"'
        response.headers["Location"] = f"/conversations/{session.id}"
        return conversation(session)

    @app.get("/conversations")
    async def list_conversations(
        store: Store,
        user_id: UserId,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> ConversationPage:
        page = await store.list_sessions(APP_NAME, user_id, limit=limit, cursor=cursor)
        return ConversationPage(items=[conversation(s) for s in page], next_cursor=page.next_cursor)

    @app.get("/conversations/{conversation_id}")
    async def resume_conversation(
        conversation_id: str,
        store: Store,
        user_id: UserId,
        response: Response,
        messages: Annotated[int, Query(ge=0, le=500)] = 50,
    ) -> ConversationDetail:
        """The conversation with its last ``messages`` messages, oldest first."""
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

    @app.post("/conversations/{conversation_id}/messages", status_code=status.HTTP_201_CREATED)
    async def post_message(
        conversation_id: str,
        body: NewMessage,
        store: Store,
        user_id: UserId,
        version: IfMatch,
        response: Response,
    ) -> Exchange:
        session = await owned(store, user_id, conversation_id)
        turn = int(session.state.get(COUNTER, 0)) + 1
        text = bot_reply(body.text, turn)
        # both messages in one transaction, refused as a whole if the client's version is stale
        events = await store.append_events(
            conversation_id,
            [
                {"author": "user", "content": {"role": "user", "content": body.text}},
                {"author": "assistant", "content": {"role": "assistant", "content": text}},
            ],
            expected_version=expected(version, body.expected_version),
        )
        # the counter is incremented in the database: concurrent posts never lose a count
        await store.patch_state(conversation_id, increment={COUNTER: 1})
        session = await owned(store, user_id, conversation_id)
        response.headers["ETag"] = f'"{session.version}"'
        return Exchange(
            message=message(events[0]),
            reply=message(events[1]),
            version=session.version,
            turns=int(session.state.get(COUNTER, 0)),
        )

    @app.patch("/conversations/{conversation_id}/state")
    async def patch_state(
        conversation_id: str,
        body: StatePatch,
        store: Store,
        user_id: UserId,
        version: IfMatch,
        response: Response,
    ) -> StateOut:
        check_client_keys([*body.set, *body.remove])
        await owned(store, user_id, conversation_id)
        new_version = await store.patch_state(
            conversation_id,
            body.set,
            body.remove,
            expected_version=expected(version, body.expected_version),
        )
        session = await owned(store, user_id, conversation_id)
        response.headers["ETag"] = f'"{new_version}"'
        return StateOut(version=new_version, state=session.state)

    @app.delete("/conversations/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_conversation(conversation_id: str, store: Store, user_id: UserId) -> None:
        if not await store.delete_session(conversation_id, app_name=APP_NAME, user_id=user_id):
            raise SessionNotFoundError(conversation_id)

    return app


app = create_app()
