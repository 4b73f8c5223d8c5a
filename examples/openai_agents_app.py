"""OpenAI Agents SDK sessions in sessiondb, without an API key (docs/openai-agents.md).

Without ``OPENAI_API_KEY`` the agent's model is ``EchoModel``, an Agents SDK ``Model`` that
returns canned output (it repeats the last user message and counts what the session holds), so
``Runner.run``, ``Runner.run_sync`` and the sessions work as with a real model. With a key the
agent uses the SDK's default OpenAI model, and the compaction step at the end (which calls the
Responses API's ``responses.compact``) runs too. The database is ``SESSIONDB_URL``, else
``sqlite:///./agents.db``.
"""

import asyncio
import os
import threading
from dataclasses import dataclass
from typing import Any

from agents import Agent, Model, ModelResponse, Runner, Usage, set_tracing_disabled
from agents.memory import OpenAIResponsesCompactionSession
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from sessiondb import AsyncSessionStore
from sessiondb.openai_agents import SessiondbSession

URL = os.environ.get("SESSIONDB_URL", "sqlite:///./agents.db")
KEY = os.environ.get("OPENAI_API_KEY")


class EchoModel(Model):
    """Canned output instead of OpenAI's API: "re: <last user text> (<n> items before)"."""

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else input
        text = f"re: {items[-1]['content']} ({len(items) - 1} items before)"
        content = [ResponseOutputText(text=text, type="output_text", annotations=[])]
        message = ResponseOutputMessage(
            id="msg_echo", role="assistant", status="completed", type="message", content=content
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the scripted model does not stream")


if not KEY:
    set_tracing_disabled(True)  # the SDK uploads traces with the key: none here
agent = Agent(
    name="Assistant", instructions="Reply very concisely.", model=None if KEY else EchoModel()
)


@dataclass
class Account:
    user_id: str


async def shared_store() -> None:
    async with AsyncSessionStore(URL) as store:
        session = SessiondbSession("conversation-42", store, user_id="alice")
        result = await Runner.run(agent, "What city is the Golden Gate Bridge in?", session=session)
        print(result.final_output)

        # reading the history with sessiondb
        events = await store.list_events("conversation-42", newest_first=True, limit=20)
        for e in events:
            print(e.seq, e.author, e.content)  # author: the item's role ("user", "assistant")
            # or type ("function_call", ...)

        # one session object for every user of an app: the run context names the user
        session = SessiondbSession(
            "support", store, app_name="helpdesk", user_id_from=lambda w: w.context.user_id
        )
        await Runner.run(agent, "Hi", session=session, context=Account("alice"))  # alice's history
        await Runner.run(agent, "Hi", session=session, context=Account("bob"))  # bob's: another one
        for user in ("alice", "bob"):
            print(user, await store.count_sessions("helpdesk", user), "session")

        if KEY:  # compaction calls the Responses API's responses.compact: a key is needed
            session = OpenAIResponsesCompactionSession(
                "conversation-42", SessiondbSession("conversation-42", store, user_id="alice")
            )
            result = await Runner.run(agent, "Hello", session=session)
            print(result.final_output)


asyncio.run(shared_store())

# threads, each with an event loop of its own (Runner.run_sync), on one session built from a URL
session = SessiondbSession("conversation-42", URL, user_id="alice")


def worker(prompt: str) -> None:  # e.g. in a thread pool
    Runner.run_sync(agent, prompt, session=session)


threads = [threading.Thread(target=worker, args=(f"question {i}",)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(asyncio.run(session.get_items())), "items in conversation-42")
session.close()
