"""A LangGraph graph on the async saver, over a store you share (docs/langgraph.md).

The graph of the LangGraph quickstart (a node that waits for a human), run with
``graph.ainvoke``; the checkpointer shares an ``AsyncSessionStore`` (its pool and options),
and the thread, bound to user ``ann``, expires 30 days after its last checkpoint. The database
is ``SESSIONDB_URL``, else ``sqlite:///./graph.db``. Run it twice: the thread goes on.
"""

import asyncio
import operator
import os
from datetime import timedelta
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from sessiondb import AsyncSessionStore
from sessiondb.langgraph import AsyncSessiondbSaver

URL = os.environ.get("SESSIONDB_URL", "sqlite:///./graph.db")


class State(TypedDict):
    notes: Annotated[list[str], operator.add]


def ask(state: State) -> dict[str, list[str]]:
    answer = interrupt("What should I note?")  # waits for a human
    return {"notes": [answer]}


builder = StateGraph(State)
builder.add_node("ask", ask)
builder.add_edge(START, "ask")
builder.add_edge("ask", END)


async def main() -> None:
    store = AsyncSessionStore(
        URL, pool_size=20
    )  # e.g. "postgresql://app@db/app?pooler=transaction"
    checkpointer = AsyncSessiondbSaver(store, ttl=timedelta(days=30))
    graph = builder.compile(checkpointer=checkpointer)
    config = {"configurable": {"thread_id": "notes", "user_id": "ann"}}

    await graph.ainvoke({"notes": []}, config)  # runs until the interrupt
    print("waiting:", (await graph.aget_state(config)).next)
    await graph.ainvoke(Command(resume="buy milk"), config)
    print("notes:", (await graph.aget_state(config)).values["notes"])
    await store.close()


asyncio.run(main())
