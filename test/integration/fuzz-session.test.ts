// Fuzzing a live sidecar (the built CLI, in a child process) in front of a throwaway cluster: after a
// real login, connections send units of valid messages and then, on most connections, one mutated
// stream (lengths rewritten, bytes flipped, frames inserted, truncated), cut into random chunks.
// Meanwhile a canary client runs SELECT 1 in a loop. The process must live, every canary query be
// answered, and no backend may see a malformed message (Postgres would log it) or die of one.
// FUZZ_SEED=<n> replays a run; FUZZ_STREAMS=<n> changes its size.
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backendProtocolErrors,
  chunks,
  mutate,
  mutation,
  position,
  validStream,
} from "../helpers/frontend-streams.js";
import {
  httpStatus,
  type SidecarProcess,
  sidecarMetric,
  spawnSidecar,
} from "../helpers/lifecycle-process.js";
import { type SharedCluster, sharedCluster } from "../helpers/shared-cluster.js";
import { queryFrame, RawClient, startupPacket } from "../helpers/wire.js";

const STREAMS = Number(process.env.FUZZ_STREAMS ?? 10_000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const CONCURRENCY = 32;
/** How long a connection with a hostile stream is given to be answered or closed. */
const HOSTILE_WAIT_MS = 400;
/** How long a connection of valid units only is given to answer its marker. */
const VALID_WAIT_MS = 5000;

/** What one connection sends: some valid units, maybe one mutated stream, all in random chunks. */
interface Plan {
  valid: Buffer[][];
  hostile: Buffer | null;
  cuts: number[];
}
const plan: fc.Arbitrary<Plan> = fc.record({
  valid: fc.array(validStream, { maxLength: 8 }),
  hostile: fc.option(
    fc
      .tuple(validStream, fc.array(mutation, { minLength: 1, maxLength: 4 }))
      .map(([messages, mutations]) => mutate(messages, mutations)),
    { freq: 3, nil: null },
  ),
  cuts: fc.array(position, { maxLength: 6 }),
});

/**
 * Marker after everything: a Sync ends any extended batch, a ROLLBACK any transaction a unit began
 * (aborted or not), then the Query we wait for.
 */
const MARKER = Buffer.concat([
  Buffer.from([0x53, 0, 0, 0, 4]),
  queryFrame("ROLLBACK"),
  queryFrame("SELECT 'fuzz-done'"),
]);

describe("fuzzing a live session", () => {
  let cluster: SharedCluster;
  let sidecar: SidecarProcess;

  beforeAll(async () => {
    cluster = await sharedCluster();
    await cluster.createUser("fuzz_junk", "junk pw");
    sidecar = await spawnSidecar([
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--upstream",
      cluster.url({ database: "postgres" }),
      "--users",
      "[{name: fuzz_junk, password: junk pw}]",
      "--auth-type",
      "trust",
      "--pool-size",
      "4",
    ]);
  });
  afterAll(async () => {
    sidecar?.kill();
  });

  it(`survives ${STREAMS} generated streams while a canary keeps being served`, async () => {
    const logMark = cluster.log().length;
    let exited = false;
    void sidecar.exited.then(() => {
      exited = true;
    });

    // The canary: its own user, so its own pool, which the fuzzers never touch.
    const canary = new pg.Client({
      host: "127.0.0.1",
      port: sidecar.port,
      user: cluster.superuser,
      password: cluster.password,
      database: "postgres",
    });
    canary.on("error", () => {});
    await canary.connect();
    let stop = false;
    let answered = 0;
    let slowest = 0;
    const canaryFailures: string[] = [];
    const canaryLoop = (async () => {
      while (!stop && canaryFailures.length < 10) {
        const t0 = performance.now();
        try {
          const r = await canary.query("SELECT 1 AS one");
          if (r.rows[0]?.one !== 1) canaryFailures.push(`wrong answer ${JSON.stringify(r.rows)}`);
          else answered++;
        } catch (err) {
          canaryFailures.push((err as Error).message);
        }
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();

    // Plans until STREAMS streams are fed (each valid unit and each hostile stream counts one).
    const plans: Plan[] = [];
    let streams = 0;
    for (const p of fc.sample(plan, { numRuns: STREAMS, seed: SEED })) {
      if (streams >= STREAMS) break;
      plans.push(p);
      streams += p.valid.length + (p.hostile ? 1 : 0);
    }

    const outcome = { answered: 0, closed: 0, timedOut: 0, loginFailed: 0 };
    /** Connections of valid units only that did not get their marker answered (must be none). */
    const validUnanswered: string[] = [];
    const feed = async (p: Plan) => {
      const c = await RawClient.connect(sidecar.port);
      try {
        c.write(startupPacket(3, 0, { user: "fuzz_junk", database: "postgres" }));
        if ((await c.waitForType("Z", 5000)) === undefined) {
          outcome.loginFailed++;
          return;
        }
        const before = c.messages().length;
        const parts = [...p.valid.flat(), ...(p.hostile ? [p.hostile] : []), MARKER];
        for (const chunk of chunks(Buffer.concat(parts), p.cuts)) c.write(chunk);
        const done = (m: { type: string; body: Buffer }[]) =>
          m.slice(before).some((x) => x.type === "D" && x.body.includes("fuzz-done"));
        const msgs = await c.waitFor(
          (m) => done(m) && m.at(-1)?.type === "Z",
          p.hostile ? HOSTILE_WAIT_MS : VALID_WAIT_MS,
        );
        if (done(msgs)) outcome.answered++;
        else if (c.closed) outcome.closed++;
        else outcome.timedOut++;
        if (!p.hostile && !done(msgs)) {
          const types = msgs
            .slice(before)
            .map((x) => x.type)
            .join("");
          validUnanswered.push(`${c.closed ? "closed" : "open"}: ${types}`);
        }
      } finally {
        c.destroy();
      }
    };

    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < plans.length && !exited) await feed(plans[next++]);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    stop = true;
    await canaryLoop;
    console.log(
      `fuzz seed ${SEED}: ${streams} streams on ${plans.length} connections in ${seconds.toFixed(1)} s; ` +
        `${JSON.stringify(outcome)}; canary ${answered} queries, slowest ${slowest.toFixed(0)} ms`,
    );

    expect(exited, `the sidecar exited:\n${sidecar.output().slice(-3000)}`).toBe(false);
    expect(await httpStatus(sidecar.httpPort, "/healthz")).toBe(200);
    expect(canaryFailures).toEqual([]);
    expect(answered).toBeGreaterThan(10);
    expect((await canary.query("SELECT 'still here' AS s")).rows).toEqual([{ s: "still here" }]);
    await canary.end();
    expect(outcome.loginFailed).toBe(0);
    // Nothing malformed reached a backend (Postgres would have logged it), and no backend died
    // under the sidecar.
    expect(backendProtocolErrors(cluster.log().slice(logMark))).toEqual([]);
    for (const reason of ["network", "crashed", "server_fatal", "protocol_error", "terminated"]) {
      expect(
        await sidecarMetric(sidecar, "pgsidecar_server_connections_closed_total", { reason }),
        reason,
      ).toBe(0);
    }
    expect(
      await sidecarMetric(sidecar, "pgsidecar_server_connections_closed_total", {
        user: "postgres",
      }),
    ).toBe(0);
    expect(await sidecarMetric(sidecar, "pgsidecar_internal_errors_total")).toBe(0);
    // Connections that sent only valid units get every answer (a server left skipping to Sync
    // by a client's error is never pooled as clean: Pool.takeBack).
    expect(validUnanswered, `seed ${SEED}`).toEqual([]);
  });
});
