"""The FastAPI example (examples/fastapi_app) while its database server goes away and comes back.

A private server (never the shared ones) is stopped under the running app: every endpoint but
/healthz answers 503 with Retry-After, /readyz says the database is unreachable, and once the
server is back the same app (same store, same pool) serves again without a restart.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the example needs fastapi")
httpx = pytest.importorskip("httpx", reason="the example's tests need httpx")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the example lives outside src/
    sys.path.insert(0, str(ROOT))

from examples.fastapi_app.app import Settings, create_app  # noqa: E402

from sessiondb import SCHEMA_HEAD  # noqa: E402

from ._harness import in_thread  # noqa: E402

ALICE = {"X-User-Id": "fastapi-outage-alice"}
COUNTER = itertools.count(1)


async def test_server_stopped_then_back(server: Any, db: Any) -> None:
    app = create_app(settings=Settings(url=db.url(), connect_timeout=3, retry_after=9))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            created = await c.post("/conversations", json={"title": "t"}, headers=ALICE)
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            posted = await c.post(
                f"/conversations/{cid}/messages", json={"text": "a"}, headers=ALICE
            )
            assert posted.status_code == 201, posted.text
            assert (await c.get("/readyz")).status_code == 200

            await in_thread(server.stop)
            try:
                assert (await c.get("/healthz")).status_code == 200
                ready = await c.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert ready.json()["database"] == "unreachable"
                for method, path, body in [
                    ("GET", f"/conversations/{cid}", None),
                    ("GET", "/conversations", None),
                    ("POST", f"/conversations/{cid}/messages", {"text": "lost?"}),
                    ("PATCH", f"/conversations/{cid}/state", {"set": {"a": 1}}),
                    ("POST", "/conversations", {}),
                ]:
                    response = await c.request(method, path, json=body, headers=ALICE)
                    assert response.status_code == 503, (method, path, response.text)
                    assert response.headers["Retry-After"] == "9"
                    assert response.json()["retry_after"] == 9
            finally:
                await in_thread(server.start)

            # the same app serves again; the refused writes wrote nothing
            assert (await c.get("/readyz")).status_code == 200
            detail = await c.get(f"/conversations/{cid}", headers=ALICE)
            assert detail.status_code == 200, detail.text
            assert [m["text"] for m in detail.json()["messages"] if m["role"] == "user"] == ["a"]
            assert "a" not in detail.json()["state"] and detail.json()["turns"] == 1
            again = await c.post(
                f"/conversations/{cid}/messages", json={"text": "b"}, headers=ALICE
            )
            assert again.status_code == 201 and again.json()["turn"] == 2


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_silent_server_readyz_answers_within_its_timeout(
    scheme: str, silent_port: int
) -> None:
    """A server that accepts connections and never answers (frozen, a black-holed route):
    /readyz answers 503 within SESSIONDB_READY_TIMEOUT, for a probe's own timeout; requests
    answer 503 once the connect timeout is spent."""
    url = f"{scheme}://u:p@127.0.0.1:{silent_port}/chat"
    settings = Settings(url=url, connect_timeout=3, ready_timeout=0.5, auto_migrate=False)
    app = create_app(settings=settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            t0 = time.monotonic()
            ready = await c.get("/readyz")
            assert time.monotonic() - t0 < 2.5  # the probe's bound, not the connect timeout (3 s)
            assert ready.status_code == 503, ready.text
            assert ready.json()["database"] == "no answer within 0.5 s"
            listed = await c.get("/conversations", headers=ALICE)
            assert listed.status_code == 503 and listed.headers["Retry-After"] == "5"


async def test_started_during_an_outage_then_ready_once_the_server_is_back(server: Any) -> None:
    """The server is down when the app starts (on an empty database, auto-migration on): the
    app starts anyway, /readyz says why, and once the server is back /readyz upgrades the
    schema (in the background if it takes longer than the probe's timeout) and turns 200."""
    name = f"fastapi_empty_{os.getpid()}_{next(COUNTER)}"
    server.create_database(name)
    settings = Settings(url=server.url(name), connect_timeout=3, ready_timeout=1)
    app = create_app(settings=settings)
    await in_thread(server.stop)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                assert (await c.get("/healthz")).status_code == 200
                down = await c.get("/readyz")
                assert down.status_code == 503 and down.json()["database"] == "unreachable"
                await in_thread(server.start)
                seen = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # as a readiness probe polls
                    ready = await c.get("/readyz")
                    seen.append(ready.json()["database"])
                    if ready.status_code == 200:
                        break
                assert ready.status_code == 200, seen
                assert ready.json()["schema_revision"] == SCHEMA_HEAD
                assert set(seen) <= {"ok", "the schema is being upgraded"}, seen
                created = await c.post("/conversations", json={}, headers=ALICE)
                assert created.status_code == 201, created.text
    finally:
        server.ensure_running()
