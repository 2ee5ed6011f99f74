// `npm run demo -- --failover`: the primary is stopped mid-run, its synchronous streaming standby
// promoted, and the old primary brought back as a read-only standby of the new one, while the
// sidecar's upstream names both hosts with target_session_attrs=read-write. This file holds the
// failover itself and what the summary says about it; demo.ts runs the workload around it.
import pg from "pg";
import type { PgCluster } from "../test/helpers/pg-cluster.js";

/** Seconds between the steps of a failover. */
const PROMOTE_AFTER_S = 2;
const OLD_PRIMARY_BACK_AFTER_S = 3;

export interface FailoverTimeline {
  stoppedAt: number;
  promotedAt: number;
  /** The old primary streaming from the new one, read-only (0 if that step failed). */
  oldPrimaryBackAt: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Stops `primary` (fast, as a managed service's failover does), promotes `standby`, then starts
 * the old primary as a standby of the new one. `step` is told each step as it completes.
 */
export async function failover(
  primary: PgCluster,
  standby: PgCluster,
  step: (what: string) => void,
): Promise<FailoverTimeline> {
  await primary.stop("fast");
  const stoppedAt = Date.now();
  step("primary stopped");
  await sleep(PROMOTE_AFTER_S * 1000);
  await standby.promote();
  const promotedAt = Date.now();
  step(`standby promoted (${((promotedAt - stoppedAt) / 1000).toFixed(1)} s without a writer)`);
  await sleep(OLD_PRIMARY_BACK_AFTER_S * 1000);
  let oldPrimaryBackAt = 0;
  try {
    await primary.startAsStandbyOf(standby);
    oldPrimaryBackAt = Date.now();
    step("old primary back as a read-only standby of the new one");
  } catch (err) {
    step(`old primary could not come back: ${(err as Error).message.split("\n")[0]}`);
  }
  return { stoppedAt, promotedAt, oldPrimaryBackAt };
}

/** One checkpoint the application saw acknowledged (the workload's `ack` events). */
export interface Ack {
  t: number;
  id: string;
  thread: string;
}

/** Summary lines: the timeline, the first write after the promotion, acknowledged writes kept. */
export async function failoverReport(
  timeline: FailoverTimeline,
  acks: Ack[],
  writer: PgCluster,
  connect: { user: string; password: string; database: string },
): Promise<string[]> {
  const lines: string[] = [];
  const after = acks.filter((a) => a.t >= timeline.promotedAt).map((a) => a.t);
  const first = after.length ? Math.min(...after) - timeline.promotedAt : null;
  lines.push(
    `primary stopped, standby promoted ${((timeline.promotedAt - timeline.stoppedAt) / 1000).toFixed(1)} s later` +
      (timeline.oldPrimaryBackAt
        ? `, old primary back read-only ${((timeline.oldPrimaryBackAt - timeline.promotedAt) / 1000).toFixed(1)} s after that`
        : ""),
  );
  lines.push(
    first === null
      ? "no checkpoint was acknowledged after the promotion"
      : `first checkpoint acknowledged ${Math.round(first)} ms after the promotion (on the new primary)`,
  );
  const c = new pg.Client({ host: writer.host, port: writer.port, ...connect });
  await c.connect();
  try {
    const ids = acks.map((a) => a.id);
    const found = await c.query(
      "SELECT count(*)::int AS n FROM checkpoints WHERE checkpoint_id = ANY($1::text[])",
      [ids],
    );
    const n = found.rows[0].n as number;
    lines.push(
      `acknowledged checkpoints on the new primary: ${n} of ${ids.length}` +
        (n === ids.length ? " (none lost)" : ` (${ids.length - n} LOST)`),
    );
  } finally {
    await c.end();
  }
  return lines;
}
