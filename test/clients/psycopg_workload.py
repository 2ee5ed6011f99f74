"""psycopg 3 workload as LangGraph's checkpointer configures it (see shared/seed), for tests.

Env: DSN, TASKS (30), EXECUTIONS per mode (total, split over tasks), PREPARE_THRESHOLD ("0" or
"none"), MODES (comma list of plain,transaction,pipeline). Prints one JSON line with counts.
"""
import asyncio
import json
import os
import sys

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

DSN = os.environ["DSN"]
TASKS = int(os.environ.get("TASKS", "30"))
EXECUTIONS = int(os.environ.get("EXECUTIONS", "5000"))
THRESHOLD = None if os.environ.get("PREPARE_THRESHOLD", "0") == "none" else int(os.environ.get("PREPARE_THRESHOLD", "0"))
MODES = os.environ.get("MODES", "plain,transaction").split(",")

# Ten statement shapes, each with a known answer for argument n.
SHAPES = [
    ("SELECT %s::int + 1 AS v", lambda n: n + 1),
    ("SELECT %s::int * 2 AS v", lambda n: n * 2),
    ("SELECT (%s::int)::text || 'x' AS v", lambda n: f"{n}x"),
    ("SELECT length(repeat('a', %s::int)) AS v", lambda n: n),
    ("SELECT count(*)::int AS v FROM generate_series(1, %s::int)", lambda n: n),
    ("SELECT %s::bigint - 7 AS v", lambda n: n - 7),
    ("SELECT abs(-%s::int) AS v", lambda n: n),
    ("SELECT v FROM kv WHERE k = %s::int", lambda n: n % 100),
    ("SELECT %s::int %% 10 AS v", lambda n: n % 10),
    ("SELECT greatest(%s::int, 50) AS v", lambda n: max(n, 50)),
]


async def main() -> None:
    errors: list[str] = []
    wrong = 0
    done = 0
    pool = AsyncConnectionPool(
        DSN,
        max_size=30,
        min_size=2,
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": THRESHOLD, "row_factory": dict_row},
    )
    await pool.open(wait=True)
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v int)")
        await conn.execute("INSERT INTO kv SELECT g, g % 100 FROM generate_series(0, 199) g ON CONFLICT DO NOTHING")

    async def run(task: int, mode: str, count: int) -> None:
        nonlocal wrong, done
        for i in range(count):
            n = (task * 7919 + i) % 100
            sql, expect = SHAPES[(task + i) % len(SHAPES)]
            try:
                async with pool.connection() as conn:
                    if mode == "plain":
                        cur = await conn.execute(sql, (n,))
                        rows = await cur.fetchall()
                    elif mode == "transaction":
                        async with conn.transaction():
                            cur = await conn.execute(sql, (n,))
                            rows = await cur.fetchall()
                    else:  # pipeline: two statements sharing one Sync
                        async with conn.pipeline():
                            c1 = await conn.execute(sql, (n,))
                            c2 = await conn.execute("SELECT %s::int AS echo", (n,))
                        rows = await c1.fetchall()
                        echo = await c2.fetchall()
                        if echo != [{"echo": n}]:
                            wrong += 1
                if rows != [{"v": expect(n)}]:
                    wrong += 1
                done += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                errors.append(f"{type(e).__name__}: {e}")

    for mode in MODES:
        per_task = EXECUTIONS // TASKS
        await asyncio.gather(*(run(t, mode, per_task) for t in range(TASKS)))
    await pool.close()
    print(json.dumps({"done": done, "wrong": wrong, "errors": len(errors), "first_errors": errors[:5]}))


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
