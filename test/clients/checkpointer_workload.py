"""W1: a LangGraph-checkpointer-like workload through psycopg 3, configured as in shared/seed.

Each operation reads the latest checkpoint of a thread, upserts a checkpoint row, then writes two
"writes" rows in one pipeline (as the Python checkpointer's put_writes does). An operation is
retried up to 3 times on any psycopg error, as LangGraph's runner does.

Every operation is reported, acknowledged or not, with how many times the client sent the
checkpoint upsert and the pipelined writes (each send applies its rows at most once; every upsert
counts its applications in an `applied` column). The test then checks, in both tables, that every
acknowledged row is present and that no row was applied more often than the client sent it.
An operation is acknowledged when all its statements returned without error: the checkpoint upsert
and both pipelined writes (the pipeline block exits only once their results and Sync arrived).

Env: DSN, DURATION (seconds), TASKS. Prints one JSON object.
"""
import asyncio
import json
import os
import random
import time

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

DSN = os.environ["DSN"]
DURATION = float(os.environ.get("DURATION", "10"))
TASKS = int(os.environ.get("TASKS", "10"))
WORKER = os.environ.get("WORKER", "w1")

SELECT_LATEST = (
    "SELECT checkpoint_id, data FROM checkpoints WHERE thread_id = %s "
    "ORDER BY checkpoint_id DESC LIMIT 1"
)
UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (thread_id, checkpoint_id, data) VALUES (%s, %s, %s) "
    "ON CONFLICT (thread_id, checkpoint_id) DO UPDATE SET data = EXCLUDED.data, "
    "applied = checkpoints.applied + 1"
)
UPSERT_WRITE = (
    "INSERT INTO checkpoint_writes (thread_id, checkpoint_id, idx, value) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (thread_id, checkpoint_id, idx) DO UPDATE SET value = EXCLUDED.value, "
    "applied = checkpoint_writes.applied + 1"
)

# Errors that mean the connection itself broke (what the seed's users saw): never expected here.
CLOSED_MARKERS = ("server closed the connection", "consuming input failed", "the connection is closed",
                  "connection lost", "Connection refused", "SSL connection has been closed")


async def main() -> None:
    stats = {"ops": 0, "failed_ops": 0, "read_errors": 0, "write_errors": 0, "closed_errors": 0,
             "errors_by_sqlstate": {}, "first_errors": [], "latencies_ms": []}
    # [thread, checkpoint_id, checkpoint upserts sent, write pipelines sent, acknowledged, acked at (epoch ms)]
    operations: list[list] = []
    pool = AsyncConnectionPool(
        DSN, max_size=30, min_size=2, open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open(wait=True, timeout=60)
    deadline = time.monotonic() + DURATION

    def record(e: Exception, during: str) -> None:
        state = getattr(e, "sqlstate", None) or type(e).__name__
        stats["errors_by_sqlstate"][state] = stats["errors_by_sqlstate"].get(state, 0) + 1
        stats[f"{during}_errors"] += 1
        text = str(e)
        if any(m in text for m in CLOSED_MARKERS):
            stats["closed_errors"] += 1
        if len(stats["first_errors"]) < 8:
            stats["first_errors"].append(f"{during}: {state}: {text.strip()[:200]}")

    async def operation(thread: str, cp: int) -> None:
        started = time.monotonic()
        op = [thread, cp, 0, 0, False, None]
        operations.append(op)
        for attempt in range(1, 4):
            during = "read"
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(SELECT_LATEST, (thread,))
                    await cur.fetchall()
                    during = "write"
                    op[2] += 1
                    await conn.execute(UPSERT_CHECKPOINT, (thread, cp, Jsonb({"step": cp, "attempt": attempt})))
                    op[3] += 1
                    async with conn.pipeline():
                        await conn.execute(UPSERT_WRITE, (thread, cp, 0, f"a{cp}"))
                        await conn.execute(UPSERT_WRITE, (thread, cp, 1, f"b{cp}"))
                op[4] = True
                op[5] = time.time() * 1000
                stats["ops"] += 1
                stats["latencies_ms"].append((time.monotonic() - started) * 1000)
                return
            except psycopg.Error as e:
                record(e, during)
                await asyncio.sleep(0.05 * attempt)
        stats["failed_ops"] += 1

    async def task(n: int) -> None:
        thread = f"{WORKER}-t{n}"
        cp = 0
        while time.monotonic() < deadline:
            cp += 1
            await operation(thread, cp)
            await asyncio.sleep(random.uniform(0, 0.01))

    await asyncio.gather(*(task(n) for n in range(TASKS)))
    await pool.close()
    lat = sorted(stats.pop("latencies_ms"))
    pct = lambda p: round(lat[min(len(lat) - 1, int(len(lat) * p))], 2) if lat else None  # noqa: E731
    stats["p50_ms"], stats["p99_ms"] = pct(0.5), pct(0.99)
    stats["operations"] = operations
    print(json.dumps(stats))


asyncio.run(main())
