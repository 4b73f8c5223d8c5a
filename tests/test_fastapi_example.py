"""The FastAPI example (examples/fastapi_app) on every backend, through httpx's ASGI transport.

The app's lifespan runs for real (it opens the AsyncSessionStore); no database is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the example needs fastapi")
httpx = pytest.importorskip("httpx", reason="the example's tests need httpx")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the example lives outside src/
    sys.path.insert(0, str(ROOT))

from examples.fastapi_app.app import APP_NAME, Settings, create_app  # noqa: E402

from sessiondb import SCHEMA_HEAD, AsyncSessionStore  # noqa: E402

ALICE = {"X-User-Id": "alice"}
BOB = {"X-User-Id": "bob"}


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[Any]:
    """A client of ``app``, its lifespan run (the store opened, then closed)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Any]:
    async with serve(create_app(db_url)) as c:
        yield c


async def new_conversation(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/conversations", json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_happy_path(client: Any, db_url: str) -> None:
    conv = await new_conversation(client, ALICE, title="Trip", state={"lang": "en"})
    assert conv["title"] == "Trip" and conv["turns"] == 0 and conv["version"] == 1
    assert conv["state"] == {"lang": "en", "turns": 0}
    cid = conv["id"]

    first = await client.post(f"/conversations/{cid}/messages", json={"text": "Hi"}, headers=ALICE)
    assert first.status_code == 201, first.text
    exchange = first.json()
    assert exchange["message"] == {**exchange["message"], "role": "user", "text": "Hi", "seq": 1}
    assert exchange["reply"]["role"] == "assistant" and exchange["reply"]["seq"] == 2
    assert "'Hi'" in exchange["reply"]["text"] and "#1" in exchange["reply"]["text"]
    assert exchange["turn"] == 1
    assert first.headers["ETag"] == f'"{exchange["version"]}"'

    second = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "Paris?"},
        headers={**ALICE, "If-Match": first.headers["ETag"]},
    )
    assert second.status_code == 201, second.text
    assert second.json()["turn"] == 2 and second.json()["version"] > exchange["version"]

    # resume: the whole conversation, oldest first
    resumed = await client.get(f"/conversations/{cid}", headers=ALICE)
    assert resumed.status_code == 200
    detail = resumed.json()
    assert [(m["seq"], m["role"]) for m in detail["messages"]] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "assistant"),
    ]
    assert [m["text"] for m in detail["messages"][::2]] == ["Hi", "Paris?"]
    assert detail["turns"] == 2 and detail["state"]["lang"] == "en"
    assert resumed.headers["ETag"] == f'"{detail["version"]}"'
    last_two = await client.get(f"/conversations/{cid}", params={"messages": 2}, headers=ALICE)
    assert [m["seq"] for m in last_two.json()["messages"]] == [3, 4]

    # the data is plain sessiondb: events with OpenAI-style message content
    async with AsyncSessionStore(db_url) as store:
        stored = await store.get_session(APP_NAME, "alice", cid, recent_events=1)
        assert stored is not None and stored.state["turns"] == 2 and stored.event_count == 4
        assert stored.events is not None
        assert stored.events[0].content["role"] == "assistant"

    patched = await client.patch(
        f"/conversations/{cid}/state", json={"set": {"lang": "fr"}}, headers=ALICE
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == {"lang": "fr", "turns": 2}

    deleted = await client.delete(f"/conversations/{cid}", headers=ALICE)
    assert deleted.status_code == 204
    gone = await client.get(f"/conversations/{cid}", headers=ALICE)
    assert gone.status_code == 404


async def test_list_pages_through_own_conversations(client: Any) -> None:
    mine = [(await new_conversation(client, ALICE, title=f"c{i}"))["id"] for i in range(5)]
    await new_conversation(client, BOB, title="bob's")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/conversations", params=params, headers=ALICE)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [c["id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(mine)
    assert seen[0] == mine[-1]  # newest first
    bobs = (await client.get("/conversations", headers=BOB)).json()["items"]
    assert [c["title"] for c in bobs] == ["bob's"]


async def test_unknown_or_foreign_conversation_is_404(client: Any) -> None:
    cid = (await new_conversation(client, ALICE))["id"]
    await client.post(f"/conversations/{cid}/messages", json={"text": "secret"}, headers=ALICE)
    for method, path, body in [
        ("GET", f"/conversations/{cid}", None),
        ("POST", f"/conversations/{cid}/messages", {"text": "hijack"}),
        ("PATCH", f"/conversations/{cid}/state", {"set": {"x": 1}}),
        ("DELETE", f"/conversations/{cid}", None),
        ("GET", "/conversations/no-such-id", None),
        ("POST", "/conversations/no-such-id/messages", {"text": "hello"}),
    ]:
        response = await client.request(method, path, json=body, headers=BOB)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json() == {"detail": "conversation not found"}
    unknown = await client.delete("/conversations/no-such-id", headers=ALICE)
    assert unknown.status_code == 404
    # nothing of bob's attempts reached alice's conversation
    detail = (await client.get(f"/conversations/{cid}", headers=ALICE)).json()
    assert detail["messages"][0]["text"] == "secret"
    assert len(detail["messages"]) == 2 and "x" not in detail["state"]


async def test_if_match_mismatch_is_412_and_stale_body_version_is_409(client: Any) -> None:
    conv = await new_conversation(client, ALICE)
    cid, version = conv["id"], conv["version"]
    ok = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "first", "expected_version": version},
        headers=ALICE,
    )
    assert ok.status_code == 201, ok.text
    current = ok.json()["version"]
    assert ok.headers["ETag"] == f'"{current}"'

    # If-Match is a precondition (RFC 9110): 412, with the current ETag
    stale = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "late"},
        headers={**ALICE, "If-Match": f'"{version}"'},
    )
    assert stale.status_code == 412, stale.text
    assert stale.json() == {
        "detail": stale.json()["detail"],
        "expected_version": version,
        "current_version": current,
    }
    assert stale.headers["ETag"] == f'"{current}"'
    # expected_version in the body is a conflict with the resource's state: 409
    late = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "late", "expected_version": version},
        headers=ALICE,
    )
    assert late.status_code == 409, late.text
    assert late.json()["expected_version"] == version
    assert late.json()["current_version"] == current
    assert late.headers["ETag"] == f'"{current}"'
    for header in (f'"{version}"', '"abc"', f'W/"{current}"'):  # weak tags never match
        refused = await client.patch(
            f"/conversations/{cid}/state",
            json={"set": {"a": 1}},
            headers={**ALICE, "If-Match": header},
        )
        assert refused.status_code == 412, (header, refused.text)
    # the refused writes stored nothing
    detail = (await client.get(f"/conversations/{cid}", headers=ALICE)).json()
    assert len(detail["messages"]) == 2 and detail["turns"] == 1 and detail["version"] == current
    assert "a" not in detail["state"]
    for header in ("v1", "3", '"3', "W/3", ""):
        bad = await client.post(
            f"/conversations/{cid}/messages",
            json={"text": "x"},
            headers={**ALICE, "If-Match": header},
        )
        assert bad.status_code == 400, (header, bad.text)


async def test_if_match_forms_that_match(client: Any) -> None:
    conv = await new_conversation(client, ALICE)
    cid, etag = conv["id"], '"1"'
    for form in ("{}", "*", '"99", {}', ' W/"1" , {} '):
        header = form.format(etag)
        response = await client.patch(
            f"/conversations/{cid}/state",
            json={"set": {"n": header}},
            headers={**ALICE, "If-Match": header},
        )
        assert response.status_code == 200, (header, response.text)
        assert response.json()["state"]["n"] == header
        etag = response.headers["ETag"]
        assert etag == f'"{response.json()["version"]}"'
    posted = await client.post(
        f"/conversations/{cid}/messages", json={"text": "hi"}, headers={**ALICE, "If-Match": etag}
    )
    assert posted.status_code == 201, posted.text
    starred = await client.post(
        f"/conversations/{cid}/messages", json={"text": "hi"}, headers={**ALICE, "If-Match": "*"}
    )
    assert starred.status_code == 201 and starred.json()["turn"] == 2
    # a precondition on a conversation that is not there: 404 first (RFC 9110 13.2.1)
    missing = await client.patch(
        "/conversations/nope/state", json={"set": {}}, headers={**ALICE, "If-Match": "*"}
    )
    assert missing.status_code == 404


async def test_concurrent_posts_take_distinct_turns(client: Any) -> None:
    cid = (await new_conversation(client, ALICE))["id"]
    n = 20
    responses = await asyncio.gather(
        *(
            client.post(f"/conversations/{cid}/messages", json={"text": f"m{i}"}, headers=ALICE)
            for i in range(n)
        )
    )
    assert [r.status_code for r in responses] == [201] * n, [r.text for r in responses]
    turns = sorted(r.json()["turn"] for r in responses)
    assert turns == list(range(1, n + 1))
    for r in responses:  # each reply names its own turn
        assert f"(message #{r.json()['turn']})" in r.json()["reply"]["text"]
    detail = (
        await client.get(f"/conversations/{cid}", params={"messages": 100}, headers=ALICE)
    ).json()
    assert detail["turns"] == n and len(detail["messages"]) == 2 * n
    texts = [m["text"] for m in detail["messages"] if m["role"] == "user"]
    assert sorted(texts) == sorted(f"m{i}" for i in range(n))
    numbers = sorted(
        int(m["text"].split("#")[1].split(")")[0])
        for m in detail["messages"]
        if m["role"] == "assistant"
    )
    assert numbers == list(range(1, n + 1))


async def test_bad_state_or_ids_are_422(client: Any) -> None:
    huge = 2**70  # beyond 64 bits: InvalidStateError
    create = await client.post("/conversations", json={"state": {"n": huge}}, headers=ALICE)
    assert create.status_code == 422 and "64 bits" in create.json()["detail"]
    cid = (await new_conversation(client, ALICE))["id"]
    patch = await client.patch(
        f"/conversations/{cid}/state", json={"set": {"deep": {"n": huge}}}, headers=ALICE
    )
    assert patch.status_code == 422 and "deep" in patch.json()["detail"]
    scoped = await client.patch(
        f"/conversations/{cid}/state", json={"set": {"app:motd": "hi"}}, headers=ALICE
    )
    assert scoped.status_code == 422
    long_id = await client.get("/conversations/" + "x" * 200, headers=ALICE)
    assert long_id.status_code == 422 and "128" in long_id.json()["detail"]
    long_user = await client.get("/conversations", headers={"X-User-Id": "u" * 200})
    assert long_user.status_code == 422
    bad_cursor = await client.get("/conversations", params={"cursor": "garbage"}, headers=ALICE)
    assert bad_cursor.status_code == 422
    no_user = await client.get("/conversations")
    assert no_user.status_code == 422  # FastAPI's own validation: the header is required
    # the conversation was left as it was
    detail = (await client.get(f"/conversations/{cid}", headers=ALICE)).json()
    assert detail["state"] == {"turns": 0} and detail["version"] == 1


@pytest.mark.sqlite
async def test_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("SESSIONDB_URL", url)
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            cid = (await new_conversation(c, ALICE, title="from env"))["id"]
    async with AsyncSessionStore(url) as store:
        stored = await store.get_session(APP_NAME, "alice", cid)
    assert stored is not None and stored.title == "from env"


# -- probes, outages, settings, OpenAPI ----------------------------------------------------------


async def test_probes_when_the_database_is_up(client: Any) -> None:
    live = await client.get("/healthz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "database": "ok",
        "schema_revision": SCHEMA_HEAD,
        "expected_revision": SCHEMA_HEAD,
    }


async def test_readyz_says_the_schema_is_not_current(backend: str, make_db_url: Any) -> None:
    """Without auto-migration, an empty database is not ready; requests get 503, not 500."""
    url = make_db_url()
    settings = dataclasses.replace(
        Settings.from_env({}, url=url), auto_migrate=False, retry_after=7
    )
    app = create_app(settings=settings)
    async with serve(app) as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["status"] == "unavailable" and body["schema_revision"] is None
        assert "sessiondb migrate" in body["database"] and SCHEMA_HEAD in body["database"]
        assert ready.headers["Retry-After"] == "7"
        create = await c.post("/conversations", json={}, headers=ALICE)
        assert create.status_code == 503 and create.headers["Retry-After"] == "7"
        assert create.json()["retry_after"] == 7
    async with AsyncSessionStore(url) as store:
        await store.migrate()
    async with serve(app) as c:
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.post("/conversations", json={}, headers=ALICE)).status_code == 201


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_unreachable_database_gives_503_with_retry_after(scheme: str) -> None:
    """A URL nobody listens on: the app starts, /healthz stays 200, the rest is 503."""
    if scheme == "mysql":
        pytest.importorskip("aiomysql")
    else:
        pytest.importorskip("asyncpg")
    port = free_port()
    url = f"{scheme}://nobody:secret@127.0.0.1:{port}/chat"
    app = create_app(settings=Settings(url=url, connect_timeout=2, retry_after=11))
    async with serve(app) as c:
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["database"] == "unreachable"
        assert ready.headers["Retry-After"] == "11"
        for method, path, body in [
            ("POST", "/conversations", {"title": "t"}),
            ("GET", "/conversations", None),
            ("GET", "/conversations/c1", None),
            ("POST", "/conversations/c1/messages", {"text": "hi"}),
            ("PATCH", "/conversations/c1/state", {"set": {"a": 1}}),
            ("DELETE", "/conversations/c1", None),
        ]:
            response = await c.request(method, path, json=body, headers=ALICE)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["Retry-After"] == "11"
            assert response.json() == {
                "detail": "the database is unavailable; nothing was written, retry later",
                "retry_after": 11,
            }
            assert str(port) not in response.text and "secret" not in response.text


@pytest.mark.sqlite
def test_settings_from_the_environment() -> None:
    env = {
        "DATABASE_URL": "postgres://u:p@db.internal:5432/chat",
        "SESSIONDB_POOL_SIZE": "20",
        "SESSIONDB_STATEMENT_TIMEOUT": "0",
        "SESSIONDB_AUTO_MIGRATE": "false",
        "SESSIONDB_RETRY_AFTER": "30",
    }
    s = Settings.from_env(env)
    assert s.url == "postgresql://u:p@db.internal:5432/chat"  # Heroku's scheme, normalised
    assert (s.pool_size, s.statement_timeout, s.auto_migrate, s.retry_after) == (
        20,
        None,
        False,
        30,
    )
    assert Settings.from_env({**env, "SESSIONDB_URL": "sqlite:///a.db"}).url == "sqlite:///a.db"
    assert Settings.from_env({}).url == "sqlite:///./chat.db"
    assert Settings.from_env(env, url="sqlite:///b.db").url == "sqlite:///b.db"
    assert Settings.from_env({}) == Settings()
    pooled = Settings.from_env({"DATABASE_URL": "postgresql://h:6432/db?pooler=transaction"})
    assert pooled.statement_timeout is None  # PgBouncer passes no statement_timeout on
    assert Settings.from_env({}).statement_timeout == 30


@pytest.mark.sqlite
def test_openapi_declares_every_error_response() -> None:
    schema = create_app("sqlite:///unused.db").openapi()
    paths = schema["paths"]
    components = schema["components"]["schemas"]

    def body(operation: dict[str, Any], code: str) -> str:
        ref: str = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        return ref.rsplit("/", 1)[1]

    writes = [
        paths["/conversations/{conversation_id}/messages"]["post"],
        paths["/conversations/{conversation_id}/state"]["patch"],
    ]
    for op in writes:
        assert {"404", "409", "412", "422", "503", "504"} <= set(op["responses"])
        assert body(op, "404") == "ErrorBody"
        assert body(op, "409") == body(op, "412") == "VersionConflict"
        assert body(op, "422") == "InvalidInput"
        assert body(op, "503") == "Unavailable"
        assert body(op, "504") == "OutcomeUnknown"
        assert "Retry-After" in op["responses"]["503"]["headers"]
        assert "ETag" in op["responses"]["412"]["headers"]
        assert any(p["name"] == "if-match" for p in op["parameters"])
    resume = paths["/conversations/{conversation_id}"]["get"]
    assert {"200", "404", "422", "503"} <= set(resume["responses"])
    assert body(paths["/readyz"]["get"], "503") == "Readiness"
    assert set(components["VersionConflict"]["properties"]) == {
        "detail",
        "expected_version",
        "current_version",
    }
    assert set(components["Unavailable"]["required"]) == {"detail", "retry_after"}
    # docstrings render as Markdown in /docs: no reST markup
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("description", "summary") and isinstance(value, str):
                    texts.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert len(texts) > 30
    for text in texts:
        assert "``" not in text and ":class:" not in text and ":func:" not in text, text
    assert "`If-Match`" in schema["info"]["description"]


async def test_write_whose_outcome_is_unknown_is_504(backend: str, db_url: str) -> None:
    """The connection of a write is killed by the server while the write waits for a row lock:
    sessiondb cannot know whether it was applied, and the app says so (504, no Retry-After)."""
    if backend == "sqlite":
        pytest.skip("SQLite has no server connections to kill")
    from tests.test_reliability import Admin, in_background, wait_for

    admin = Admin(db_url, backend)
    try:
        async with serve(create_app(db_url)) as c:
            cid = (await new_conversation(c, ALICE, state={"a": 0}))["id"]
            admin.lock_row(cid)

            def kill_when_waiting() -> None:
                waiting = wait_for(
                    lambda: admin.waiting_for_lock(admin.others()), "the write to wait"
                )
                admin.kill(waiting)
                admin.unlock()

            join = in_background(kill_when_waiting)
            response = await c.patch(
                f"/conversations/{cid}/state", json={"set": {"a": 1}}, headers=ALICE
            )
            join()
            assert response.status_code == 504, response.text
            assert "Retry-After" not in response.headers
            assert response.json()["outcome"] == "unknown"
            assert "read the conversation" in response.json()["detail"]
            # it was killed before it applied, and never repeated
            detail = (await c.get(f"/conversations/{cid}", headers=ALICE)).json()
            assert detail["state"]["a"] == 0 and detail["version"] == 1
    finally:
        admin.close()


async def test_idempotency_key_makes_a_repeated_post_harmless(client: Any) -> None:
    conv = await new_conversation(client, ALICE)
    cid = conv["id"]
    path = f"/conversations/{cid}/messages"
    keyed = {**ALICE, "Idempotency-Key": "k-1", "If-Match": f'"{conv["version"]}"'}
    first = await client.post(path, json={"text": "once"}, headers=keyed)
    assert first.status_code == 201, first.text
    other = await client.post(path, json={"text": "another"}, headers=ALICE)
    assert other.json()["turn"] == 2
    # the repeat (its If-Match now stale) gets the first exchange back, and writes nothing
    again = await client.post(path, json={"text": "once"}, headers=keyed)
    assert again.status_code == 201, again.text
    assert again.json()["message"] == first.json()["message"]
    assert again.json()["reply"] == first.json()["reply"]
    assert again.json()["turn"] == 1
    # concurrent repeats: one message stored
    repeats = await asyncio.gather(
        *(
            client.post(path, json={"text": "burst"}, headers={**ALICE, "Idempotency-Key": "k-2"})
            for _ in range(8)
        )
    )
    assert {r.status_code for r in repeats} == {201}
    assert len({r.json()["message"]["seq"] for r in repeats}) == 1
    assert len({r.json()["reply"]["seq"] for r in repeats}) == 1
    assert {r.json()["turn"] for r in repeats} == {3}
    detail = (await client.get(path.rsplit("/", 1)[0], headers=ALICE)).json()
    user_texts = [m["text"] for m in detail["messages"] if m["role"] == "user"]
    assert user_texts == ["once", "another", "burst"] and detail["turns"] == 3
    assert len(detail["messages"]) == 6
    # the same key for another message is refused; a key not yet used with a stale If-Match
    # is a plain 412
    reused = await client.post(
        path, json={"text": "different"}, headers={**ALICE, "Idempotency-Key": "k-1"}
    )
    assert reused.status_code == 422 and "Idempotency-Key" in reused.json()["detail"]
    stale = await client.post(path, json={"text": "x"}, headers={**keyed, "Idempotency-Key": "k-3"})
    assert stale.status_code == 412, stale.text
    bad = await client.post(path, json={"text": "x"}, headers={**ALICE, "Idempotency-Key": "a b"})
    assert bad.status_code == 422
