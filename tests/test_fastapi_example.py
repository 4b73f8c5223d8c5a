"""The FastAPI example (examples/fastapi_app) on every backend, through httpx's ASGI transport.

The app's lifespan runs for real (it opens the AsyncSessionStore); no database is mocked.
"""

from __future__ import annotations

import asyncio
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

from examples.fastapi_app.app import APP_NAME, create_app  # noqa: E402

from sessiondb import AsyncSessionStore  # noqa: E402

ALICE = {"X-User-Id": "alice"}
BOB = {"X-User-Id": "bob"}


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[Any]:
    app = create_app(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
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
    assert exchange["turns"] == 1
    assert first.headers["ETag"] == f'"{exchange["version"]}"'

    second = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "Paris?"},
        headers={**ALICE, "If-Match": first.headers["ETag"]},
    )
    assert second.status_code == 201, second.text
    assert second.json()["turns"] == 2 and second.json()["version"] > exchange["version"]

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


async def test_stale_version_is_409(client: Any) -> None:
    conv = await new_conversation(client, ALICE)
    cid, version = conv["id"], conv["version"]
    ok = await client.post(
        f"/conversations/{cid}/messages",
        json={"text": "first", "expected_version": version},
        headers=ALICE,
    )
    assert ok.status_code == 201, ok.text
    current = ok.json()["version"]

    for request in (
        {"json": {"text": "late"}, "headers": {**ALICE, "If-Match": f'"{version}"'}},
        {"json": {"text": "late", "expected_version": version}, "headers": ALICE},
    ):
        stale = await client.post(f"/conversations/{cid}/messages", **request)
        assert stale.status_code == 409, stale.text
        assert stale.json()["expected_version"] == version
        assert stale.json()["current_version"] == current
        assert stale.headers["ETag"] == f'"{current}"'
    stale_patch = await client.patch(
        f"/conversations/{cid}/state",
        json={"set": {"a": 1}},
        headers={**ALICE, "If-Match": f'W/"{version}"'},
    )
    assert stale_patch.status_code == 409
    # the refused writes stored nothing
    detail = (await client.get(f"/conversations/{cid}", headers=ALICE)).json()
    assert len(detail["messages"]) == 2 and detail["turns"] == 1 and detail["version"] == current
    assert "a" not in detail["state"]
    bad = await client.post(
        f"/conversations/{cid}/messages", json={"text": "x"}, headers={**ALICE, "If-Match": "v1"}
    )
    assert bad.status_code == 400


async def test_concurrent_posts_count_every_turn(client: Any) -> None:
    cid = (await new_conversation(client, ALICE))["id"]
    responses = await asyncio.gather(
        *(
            client.post(f"/conversations/{cid}/messages", json={"text": f"m{i}"}, headers=ALICE)
            for i in range(6)
        )
    )
    assert [r.status_code for r in responses] == [201] * 6
    detail = (await client.get(f"/conversations/{cid}", headers=ALICE)).json()
    assert detail["turns"] == 6 and len(detail["messages"]) == 12
    texts = [m["text"] for m in detail["messages"] if m["role"] == "user"]
    assert sorted(texts) == [f"m{i}" for i in range(6)]


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
