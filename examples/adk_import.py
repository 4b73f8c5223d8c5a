"""Move an ADK database into sessiondb (docs/adk.md, "Moving from ADK's own database").

ADK's own ``DatabaseSessionService`` writes a session with events and state into
``adk_sessions.db`` (no model, no key: the events are appended directly), then sessiondb imports
it twice: into ``sessions.db`` with ``import_adk``, and with ``aimport_adk`` from async code into
a store you opened. Run it again: the import skips what it already holds.
"""

import asyncio

from google.adk.events import Event
from google.adk.sessions import DatabaseSessionService
from google.genai import types

from sessiondb import AsyncSessionStore
from sessiondb.adk import SessiondbSessionService
from sessiondb.adk_import import aimport_adk, import_adk

adk_url = "sqlite+aiosqlite:///./adk_sessions.db"


async def fill_adk_database() -> None:
    """What an ADK app left behind: a session with two events and app/user state."""
    adk = DatabaseSessionService(adk_url)
    if not (await adk.list_sessions(app_name="helpdesk", user_id="ada")).sessions:
        session = await adk.create_session(
            app_name="helpdesk", user_id="ada", state={"topic": "tea", "user:name": "Ada"}
        )
        for author, text in (("user", "Hello!"), ("helper", "Hi Ada, how can I help?")):
            content = types.Content(role="user" if author == "user" else "model",
                                    parts=[types.Part(text=text)])  # fmt: skip
            await adk.append_event(session, Event(author=author, content=content))
    await adk.close()


asyncio.run(fill_adk_database())

counts = import_adk("sqlite+aiosqlite:///./adk_sessions.db", "sqlite:///./sessions.db")
print(counts)


async def main() -> None:
    async with AsyncSessionStore("sqlite:///./other_sessions.db") as my_async_store:
        counts = await aimport_adk(adk_url, my_async_store)  # from async code
        print(counts)
    # the imported conversation, through sessiondb's ADK service
    service = SessiondbSessionService("sqlite:///./sessions.db")
    (session,) = (await service.list_sessions(app_name="helpdesk", user_id="ada")).sessions
    session = await service.get_session(app_name="helpdesk", user_id="ada", session_id=session.id)
    print([e.content.parts[0].text for e in session.events], session.state)
    await service.close()


asyncio.run(main())
