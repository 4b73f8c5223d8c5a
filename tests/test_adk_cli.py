"""``adk api_server`` on sessiondb: a real server process, driven over HTTP.

The agents directory holds an agent whose model is a scripted ``BaseLlm`` and a
``services.yaml`` (or a ``services.py``) that hands the ``sessiondb+...`` schemes to
sessiondb; the session and events the server stored are then read through sessiondb.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.adk", reason="google-adk is not installed (sessiondb[adk])")

import httpx
from google.adk.events.event import Event

from sessiondb import AsyncSessionStore
from sessiondb.adk import SCHEMES, SessiondbSessionService, register_adk_schemes

BACKENDS = os.environ.get("SESSIONDB_TEST_BACKENDS", "sqlite,postgresql,mysql").split(",")

AGENT = textwrap.dedent(
    """
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_response import LlmResponse
    from google.genai import types


    class Scripted(BaseLlm):
        model: str = "scripted"

        async def generate_content_async(self, llm_request, stream=False):
            text = llm_request.contents[-1].parts[0].text
            reply = types.Content(role="model", parts=[types.Part(text=f"echo: {text}")])
            yield LlmResponse(content=reply)


    root_agent = LlmAgent(name="echo", model=Scripted(), output_key="last_reply")
    """
)

SERVICES_YAML = textwrap.dedent(
    """
    services:
      - scheme: sessiondb+sqlite
        type: session
        class: sessiondb.adk.SessiondbSessionService
      - scheme: sessiondb+postgresql
        type: session
        class: sessiondb.adk.SessiondbSessionService
      - scheme: sessiondb+mysql
        type: session
        class: sessiondb.adk.SessiondbSessionService
    """
)

SERVICES_PY = "from sessiondb.adk import register_adk_schemes\n\nregister_adk_schemes()\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def agents_dir(root: Path, route: str) -> Path:
    agents = root / "agents"
    app = agents / "echoapp"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("from . import agent\n")
    (app / "agent.py").write_text(AGENT)
    if route == "yaml":
        (agents / "services.yaml").write_text(SERVICES_YAML)
    else:
        (agents / "services.py").write_text(SERVICES_PY)
    return agents


class ApiServer:
    """``adk api_server`` in a subprocess, stopped (by its pid) when done."""

    def __init__(self, agents: Path, uri: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [
            sys.executable, "-m", "google.adk.cli", "api_server", "--port", str(self.port),
            "--session_service_uri", uri, str(agents),
        ]  # fmt: skip
        self.out = log.open("wb")
        self.proc = subprocess.Popen(
            command, stdout=self.out, stderr=subprocess.STDOUT, cwd=agents.parent
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"adk api_server exited:\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            # not listening yet: wait a moment, or for the process to exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.2)
        pytest.fail(f"adk api_server did not answer:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.out.close()


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[Any]:
    started: list[ApiServer] = []

    def start(route: str, uri: str) -> ApiServer:
        server = ApiServer(agents_dir(tmp_path, route), uri, tmp_path / "server.log")
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


CASES = [
    pytest.param(b, route, id=f"{b}-{route}", marks=getattr(pytest.mark, b))
    for b, route in (("sqlite", "yaml"), ("postgresql", "yaml"), ("postgresql", "py"))
    if b in BACKENDS
]


@pytest.mark.slow
@pytest.mark.parametrize(("backend_name", "route"), CASES)
async def test_api_server_on_sessiondb(
    backend_name: str, route: str, make_db_url: Any, api_server: Any
) -> None:
    url = make_db_url(backend_name)
    server = api_server(route, f"sessiondb+{url}")
    with httpx.Client(base_url=server.base, timeout=30.0) as http:
        made = http.post(
            "/apps/echoapp/users/ada/sessions",
            json={"session_id": "s1", "state": {"topic": "tea", "user:lang": "en"}},
        )
        assert made.status_code == 200, made.text
        assert made.json()["id"] == "s1"
        # ids are per user: bob may have an s1 too
        assert http.post("/apps/echoapp/users/bob/sessions", json={"session_id": "s1"}).is_success
        taken = http.post("/apps/echoapp/users/ada/sessions", json={"session_id": "s1"})
        assert taken.status_code == 409, taken.text  # ADK's AlreadyExistsError

        ran = []
        for text in ("hello", "and again"):
            reply = http.post(
                "/run",
                json={
                    "app_name": "echoapp", "user_id": "ada", "session_id": "s1",
                    "new_message": {"role": "user", "parts": [{"text": text}]},
                },
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            ran += [Event.model_validate(e) for e in reply.json()]
        assert [e.content.parts[0].text for e in ran if e.content and e.content.parts] == [
            "echo: hello", "echo: and again",
        ]  # fmt: skip
        listed = http.get("/apps/echoapp/users/ada/sessions").json()
        assert [s["id"] for s in listed] == ["s1"]
        shown = http.get("/apps/echoapp/users/ada/sessions/s1").json()
        assert [e["author"] for e in shown["events"]] == ["user", "echo", "user", "echo"]
    server.stop()

    # what the server stored, read through sessiondb
    async with AsyncSessionStore(url) as store:
        stored = await store.get_session("echoapp", "ada", "s1", recent_events=10)
        assert stored is not None
        assert stored.state == {"topic": "tea", "user:lang": "en", "last_reply": "echo: and again"}
        assert [e.author for e in stored.events or []] == ["user", "echo", "user", "echo"]
        assert await store.get_session("echoapp", "bob", "s1") is not None
        assert await store.get_user_state("echoapp", "ada") == {"lang": "en"}
    async with SessiondbSessionService(url) as service:
        session = await service.get_session(app_name="echoapp", user_id="ada", session_id="s1")
        assert session is not None
        assert [e for e in session.events if e.author == "echo"] == ran
        assert session.last_update_time == session.events[-1].timestamp


# -- the construction ADK's registry uses ----------------------------------------------------


async def test_uri_construction_and_schemes(tmp_path: Path) -> None:
    from google.adk.cli.service_registry import get_service_registry

    path = tmp_path / "a.db"
    service = SessiondbSessionService(
        uri=f"sessiondb+sqlite:///{path}", agents_dir=str(tmp_path), table_prefix="p_"
    )
    try:
        made = await service.create_session(app_name="a", user_id="u")
        assert await service.get_session(app_name="a", user_id="u", session_id=made.id)
    finally:
        await service.close()
    async with AsyncSessionStore(f"sqlite:///{path}", table_prefix="p_") as store:
        assert await store.get_session("a", "u", made.id) is not None
    with pytest.raises(ValueError, match="one of url, uri= or store="):
        SessiondbSessionService(f"sqlite:///{path}", uri=f"sessiondb+sqlite:///{path}")

    register_adk_schemes()
    registry = get_service_registry()
    for scheme in SCHEMES:
        assert scheme.startswith("sessiondb+")
    built = registry.create_session_service(
        f"sessiondb+sqlite:///{tmp_path / 'b.db'}", agents_dir=str(tmp_path)
    )
    assert isinstance(built, SessiondbSessionService)
    await built.close()
