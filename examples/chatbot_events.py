"""The recommended chatbot pattern: messages as events, small state, partial updates.

Compare with examples/chatbot.py (the guide's pattern), which rewrites the whole conversation
in the state on every turn. Here each message is one appended event, so a turn costs the same
at message 10 and at message 10,000, and two requests on one session never lose each other's
writes. Run it twice: the second run continues the conversation.
"""

import asyncio

from sessiondb import AsyncSessionStore

APP = "support_bot"


async def handle(store: AsyncSessionStore, user_id: str, message: str) -> str:
    sessions = await store.list_sessions(APP, user_id)
    if sessions:
        session = sessions[0]
    else:
        session = await store.create_session(APP, user_id, {"user_name": None, "turns": 0})

    # what the bot needs to answer: small state plus the last few messages, not the whole log
    session = await store.get_session(APP, user_id, session.id, recent_events=6)
    state = session.state

    if state["turns"] == 0:
        reply, learned = "Hello! What's your name?", {}
    elif state["user_name"] is None:
        reply, learned = f"Nice to meet you, {message}!", {"user_name": message}
    else:
        reply, learned = f"Thanks for your message, {state['user_name']}!", {}

    # one transaction: both messages appended, the counter bumped, the name saved
    await store.append_events(
        session.id,
        [
            {"author": "user", "content": {"text": message}},
            {"author": "assistant", "content": {"text": reply}, "state_delta": learned},
        ],
    )
    await store.patch_state(session.id, increment={"turns": 1})
    return reply


async def main() -> None:
    async with AsyncSessionStore("sqlite:///./chatbot_events.db") as store:
        for text in ("Hi there!", "Alice", "Where is my order?"):
            print(await handle(store, "customer_001", text))
        (session,) = await store.list_sessions(APP, "customer_001")
        history = await store.list_events(session.id)
        turns = session.state["turns"]
        print(f"{session.event_count} messages, {session.event_bytes} bytes, turns={turns}")
        print("last:", history[-1].content["text"])


asyncio.run(main())
