"""psycopg 3 through the sidecar: the usual conninfo with host and port changed to the sidecar's.

    DATABASE_URL=postgresql://app@127.0.0.1:6432/app?sslmode=disable PGPASSWORD=... python3 psycopg_example.py

libpq reads PGPASSWORD when the URL carries no password. sslmode=disable: the hop to the sidecar stays
inside the pod (loopback); the sidecar's own connection to Postgres is where TLS belongs.
"""

import os

import psycopg
from psycopg_pool import ConnectionPool

URL = os.environ.get("DATABASE_URL", "postgresql://app@127.0.0.1:6432/app?sslmode=disable")

# One connection: server-side prepared statements (prepare_threshold) work through transaction
# pooling; the sidecar re-prepares them on the server that runs each statement.
with psycopg.connect(URL, prepare_threshold=0) as conn:
    row = conn.execute("SELECT %s::text, current_user", ["psycopg"]).fetchone()
    print(f"{row[0]}: connected as {row[1]}")
    with conn.transaction():
        total = conn.execute("SELECT %s::int + %s::int", [40, 2]).fetchone()[0]
    print(f"psycopg: transaction ok, sum {total}")

# A pool, as LangGraph's PostgresSaver uses it: autocommit, prepare_threshold=0.
with ConnectionPool(URL, min_size=1, max_size=4, kwargs={"autocommit": True, "prepare_threshold": 0}) as pool:
    with pool.connection() as conn:
        print("psycopg pool: ok", conn.execute("SELECT 1").fetchone()[0])
