# A LangGraph-checkpointer-like workload on psycopg 3, configured exactly as in the user report
# (seed/: AsyncConnectionPool(max_size=30, min_size=2, kwargs autocommit, dict_row,
# prepare_threshold=0)). The statements are those of langgraph-checkpoint-postgres: aget_tuple's
# SELECT, aput's pipelined blob + checkpoint upserts, aput_writes' pipelined write upserts.
#
# Each task plays one graph run after another. A failed call is retried up to 3 times (LangGraph
# retries a failed run up to its max attempts), and every exception is counted. Progress goes to
# stdout as one JSON object per line, which demo/demo.ts reads (it also creates the tables).
# Run with /usr/bin/python3 (Debian's python3-psycopg and python3-psycopg-pool).
import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

# langgraph-checkpoint-postgres SELECT_SQL + "WHERE thread_id = %s AND checkpoint_ns = %s ...".
SELECT_LATEST = """
select
    thread_id, checkpoint, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        from jsonb_each_text(checkpoint -> 'channel_versions')
        inner join checkpoint_blobs bl
            on bl.thread_id = checkpoints.thread_id
            and bl.checkpoint_ns = checkpoints.checkpoint_ns
            and bl.channel = jsonb_each_text.key
            and bl.version = jsonb_each_text.value
    ) as channel_values,
    (
        select array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob]
                         order by cw.task_id, cw.idx)
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints
where thread_id = %s and checkpoint_ns = %s
order by checkpoint_id desc limit 1
"""

UPSERT_BLOBS = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

UPSERT_CHECKPOINT = """
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET
    checkpoint = EXCLUDED.checkpoint,
    metadata = EXCLUDED.metadata
"""

UPSERT_WRITES = """
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
    channel = EXCLUDED.channel,
    type = EXCLUDED.type,
    blob = EXCLUDED.blob
"""

MAX_RETRIES = 3
# Error events printed one by one; past this only the counters grow.
MAX_ERROR_EVENTS = 300


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Stats:
    def __init__(self):
        self.ops = 0
        self.errors = 0
        self.broken = 0
        self.failed = 0
        self.by_kind = {}
        self.error_events = 0
        self.pool_warnings = 0
        self.latencies = []
        # task number -> [call name, attempt, monotonic start, phase] while a call is in progress;
        # phase: 'getconn' (waiting for the pool) or 'execute' (on a connection)
        self.in_call = {}

    def progress(self, kind="progress"):
        lat = sorted(self.latencies)

        def pct(p):
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else 0

        now = time.monotonic()
        return {
            "type": kind,
            "slow_calls": sum(1 for c in self.in_call.values() if now - c[2] > 5),
            "ops": self.ops,
            "errors": self.errors,
            "broken": self.broken,
            "failed": self.failed,
            "pool_warnings": self.pool_warnings,
            "by_kind": self.by_kind,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 1) if lat else 0,
        }


class PoolWarnings(logging.Handler):
    """Counts psycopg_pool's warnings ('discarding closed connection', failed reconnects)."""

    def __init__(self, stats):
        super().__init__(logging.WARNING)
        self.stats = stats

    def emit(self, record):
        self.stats.pool_warnings += 1
        if self.stats.error_events < MAX_ERROR_EVENTS:
            self.stats.error_events += 1
            emit({"type": "pool_warning", "t": time.time() * 1000, "message": record.getMessage()})


def kind_of(exc):
    state = getattr(exc, "sqlstate", None)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{state or '-'} {type(exc).__name__}: {first[:90]}"


async def call(pool, stats, task_no, name, fn):
    """One checkpointer call, retried up to MAX_RETRIES times on any database error."""
    started = time.monotonic()
    try:
        return await call_with_retries(pool, stats, task_no, name, fn, started)
    finally:
        stats.in_call.pop(task_no, None)


async def call_with_retries(pool, stats, task_no, name, fn, started):
    for attempt in range(MAX_RETRIES + 1):
        stats.in_call[task_no] = [name, attempt + 1, time.monotonic(), "getconn"]
        conn_ref = None
        try:
            async with pool.connection() as conn:
                conn_ref = conn
                stats.in_call[task_no][3] = "execute"
                await fn(conn)
            stats.ops += 1
            stats.latencies.append(time.monotonic() - started)
            return True
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            stats.errors += 1
            broken = bool(conn_ref is not None and (conn_ref.broken or conn_ref.closed))
            if broken:
                stats.broken += 1
            k = kind_of(exc)
            stats.by_kind[k] = stats.by_kind.get(k, 0) + 1
            if stats.error_events < MAX_ERROR_EVENTS:
                stats.error_events += 1
                emit(
                    {
                        "type": "error",
                        "t": time.time() * 1000,
                        "op": name,
                        "attempt": attempt + 1,
                        "sqlstate": getattr(exc, "sqlstate", None),
                        "message": str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                        "broken": broken,
                    }
                )
            if attempt < MAX_RETRIES:
                await asyncio.sleep(0.05 * (attempt + 1))
    stats.failed += 1
    return False


def blob(n):
    return random.randbytes(n)


async def run_task(pool, stats, deadline, think, task_no, acks):
    ns = ""
    while time.monotonic() < deadline:
        thread_id = f"thread-{random.randrange(50)}"

        async def get_tuple(conn):
            async with conn.cursor(binary=True) as cur:
                await cur.execute(SELECT_LATEST, (thread_id, ns))
                await cur.fetchone()

        checkpoint_id = f"{time.time_ns():020d}-{task_no}"
        versions = {"messages": checkpoint_id, "__start__": checkpoint_id}

        async def put(conn):
            async with conn.pipeline():
                async with conn.cursor(binary=True) as cur:
                    await cur.executemany(
                        UPSERT_BLOBS,
                        [
                            (thread_id, ns, ch, v, "msgpack", blob(200))
                            for ch, v in versions.items()
                        ],
                    )
                    await cur.execute(
                        UPSERT_CHECKPOINT,
                        (
                            thread_id,
                            ns,
                            checkpoint_id,
                            None,
                            json.dumps({"v": 1, "id": checkpoint_id, "channel_versions": versions}),
                            json.dumps({"source": "loop", "step": task_no}),
                        ),
                    )

        async def put_writes(conn):
            async with conn.pipeline():
                async with conn.cursor(binary=True) as cur:
                    await cur.executemany(
                        UPSERT_WRITES,
                        [
                            (thread_id, ns, checkpoint_id, f"task-{task_no}", i, "messages", "msgpack", blob(100))
                            for i in range(2)
                        ],
                    )

        for name, fn in (("get_tuple", get_tuple), ("put", put), ("put_writes", put_writes)):
            if time.monotonic() >= deadline:
                break
            ok = await call(pool, stats, task_no, name, fn)
            if ok and acks and name == "put":
                # An acknowledged checkpoint: it must be on whichever server is the primary later.
                emit({"type": "ack", "t": time.time() * 1000, "id": checkpoint_id, "thread": thread_id})
            if think > 0:
                await asyncio.sleep(think * random.uniform(0.5, 1.5))


def trace_option():
    """DEMO_LIBPQ_TRACE_DIR=dir: a libpq protocol trace of each connection in dir (for bug reports)."""
    trace_dir = os.environ.get("DEMO_LIBPQ_TRACE_DIR")
    if not trace_dir:
        return {}
    files = []

    async def configure(conn):
        f = open(os.path.join(trace_dir, f"conn-{len(files) + 1}-{conn.info.backend_pid}.trace"), "w")
        files.append(f)
        conn.pgconn.trace(f.fileno())

    return {"configure": configure}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--think-ms", type=float, default=20)
    ap.add_argument("--grace", type=float, default=15)
    ap.add_argument("--acks", action="store_true", help="print each acknowledged checkpoint (id, time)")
    args = ap.parse_args()

    stats = Stats()
    logging.getLogger("psycopg.pool").addHandler(PoolWarnings(stats))
    logging.getLogger("psycopg.pool").propagate = False

    # As in the report (seed/), open=False and opened explicitly.
    pool = AsyncConnectionPool(
        conninfo=args.dsn,
        max_size=30,
        min_size=2,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "prepare_threshold": 0,
        },
        open=False,
        **trace_option(),
    )
    await pool.open(wait=True, timeout=30)
    emit({"type": "ready", "t": time.time() * 1000})

    deadline = time.monotonic() + args.duration
    tasks = [
        asyncio.create_task(run_task(pool, stats, deadline, args.think_ms / 1000, i, args.acks))
        for i in range(args.concurrency)
    ]

    async def reporter():
        while True:
            await asyncio.sleep(0.5)
            emit(stats.progress())

    rep = asyncio.create_task(reporter())
    # A call still running at the deadline gets --grace seconds more, then is cancelled.
    done, pending = await asyncio.wait(tasks, timeout=args.duration + args.grace)
    for t in pending:
        t.cancel()
    rep.cancel()
    now = time.monotonic()
    stuck = [
        {"task": t, "op": op, "attempt": a, "seconds": round(now - since, 1), "phase": phase}
        for t, (op, a, since, phase) in sorted(stats.in_call.items())
    ]
    emit(stats.progress("done") | {"unfinished_tasks": len(pending), "stuck": stuck})
    await pool.close(timeout=5)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
