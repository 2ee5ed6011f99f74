"""A LangGraph graph whose checkpoints go through the pgsidecar sidecar in the same pod.

The app keeps its connection string with host and port changed to the sidecar's (127.0.0.1:6432);
the password comes from PGPASSWORD (a secretKeyRef in the pod spec). LangGraph's PostgresSaver opens
its connections with autocommit=True and prepare_threshold=0, which transaction pooling serves: each
checkpoint write is its own short transaction, and prepared statements are re-prepared by the
sidecar on whichever server runs them.

    pip install langgraph langgraph-checkpoint-postgres "psycopg[binary,pool]"
    DATABASE_URL=postgresql://langgraph@127.0.0.1:6432/langgraph?sslmode=disable PGPASSWORD=... python agent.py
"""

import os
from typing import Annotated, TypedDict

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

DB_URL = os.environ.get(
    "DATABASE_URL", "postgresql://langgraph@127.0.0.1:6432/langgraph?sslmode=disable"
)


class State(TypedDict):
    messages: Annotated[list, add_messages]


def respond(state: State) -> dict:
    return {"messages": [("ai", f"this thread has {len(state['messages'])} messages")]}


builder = StateGraph(State)
builder.add_node("respond", respond)
builder.add_edge(START, "respond")
builder.add_edge("respond", END)


def main() -> None:
    # A small pool per process: the sidecar holds the server connections (pool_size per pod).
    with ConnectionPool(
        DB_URL,
        min_size=1,
        max_size=10,
        # Replace a connection the sidecar closed (SIGTERM drain, restart) before handing it out.
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    ) as pool:
        checkpointer = PostgresSaver(pool)
        checkpointer.setup()  # creates the checkpoint tables once (autocommit: CREATE INDEX CONCURRENTLY)
        graph = builder.compile(checkpointer=checkpointer)
        config = {"configurable": {"thread_id": os.environ.get("THREAD_ID", "demo")}}
        for text in ("hello", "again"):
            out = graph.invoke({"messages": [("user", text)]}, config)
            print(out["messages"][-1].content)


if __name__ == "__main__":
    main()
