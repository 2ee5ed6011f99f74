// The upstream role's password is changed with ALTER ROLE every 2 s (6 times) while node-postgres
// clients query through the sidecar, whose servers live 1 s (so new ones log in all the time).
// The sidecar follows a users password_file (rewritten as Kubernetes does: a new file renamed
// over the old) or a password_command (a script reading a file), in both orders: the source
// right after ALTER ROLE, and the source first with ALTER ROLE 1 s later (a window in which
// the new password is refused). Clients see no error either way; passwords reach no log line.

import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { loggerOptions } from "../../src/log.js";
import { Sidecar } from "../../src/proxy.js";
import { type PgCluster, startCluster } from "../helpers/pg-cluster.js";

const ROTATIONS = 6;
const ROTATE_EVERY_MS = 2000;
const CLIENTS = 4;
/** source-first: how long the new password is in the source before ALTER ROLE (refused meanwhile). */
const WINDOW_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Counters {
  [labels: string]: number;
}

/** A counter's values by `source,outcome`. */
async function counter(proxy: Sidecar, name: string): Promise<Counters> {
  const out: Counters = {};
  const metric = proxy.metrics.registry.getSingleMetric(name);
  if (!metric) return out;
  for (const v of (await metric.get()).values)
    out[`${v.labels.source},${v.labels.outcome}`] = v.value;
  return out;
}

describe("upstream password rotation under load", () => {
  let cluster: PgCluster;
  let dir: string;

  beforeAll(async () => {
    cluster = await startCluster();
    dir = mkdtempSync(join(tmpdir(), "pgsidecar-rotation-"));
  });
  afterAll(async () => {
    await cluster?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes the secret as the kubelet updates a Secret volume: a new file renamed over the old. */
  function writeSecret(path: string, password: string): void {
    const next = `${path}.${randomBytes(4).toString("hex")}`;
    writeFileSync(next, `${password}\n`);
    renameSync(next, path);
  }

  async function rotation(source: "file" | "command", order: "alter-first" | "source-first") {
    const role = `rot_${source}_${order.replace("-", "_")}`;
    const passwords = [`p0-${randomBytes(6).toString("hex")}`];
    await cluster.createUser(role, passwords[0]);
    const secret = join(dir, `${role}.password`);
    writeSecret(secret, passwords[0]);

    // What the application logs in to the sidecar with: for password_file, the value read at
    // start (the app's PGPASSWORD does not change either); for password_command, a users entry
    // of its own: the rotating password never has to reach the app.
    let clientPassword = passwords[0];
    const settings: Record<string, unknown> = {
      listen: "127.0.0.1:0",
      http_listen: "off",
      upstream: `postgres://${role}@127.0.0.1:${cluster.port}/postgres`,
      server_lifetime: "1s",
      pool_size: CLIENTS,
      log_level: "info",
    };
    if (source === "file") {
      settings.users = [{ name: role, password_file: secret }];
    } else {
      const script = join(dir, `${role}.sh`);
      writeFileSync(script, `#!/bin/sh\nexec cat '${secret}'\n`);
      chmodSync(script, 0o755);
      clientPassword = "app-side password";
      settings.users = [{ name: role, password: clientPassword }];
      settings.password_command = [script];
      // Shorter than the window: the new password is fetched (and refused) before ALTER ROLE.
      settings.password_command_ttl = "500ms";
    }
    const logs: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        logs.push(String(chunk));
        done();
      },
    });
    const proxy = new Sidecar(
      loadConfig({ argv: settings, env: {} }),
      pino(loggerOptions("info"), sink),
    );
    await proxy.start();

    let stop = false;
    let queries = 0;
    const errors: string[] = [];
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const c = new pg.Client({
          host: "127.0.0.1",
          port: proxy.port,
          user: role,
          password: clientPassword,
          database: "postgres",
        });
        c.on("error", (e) => errors.push(`client error: ${e.message}`));
        await c.connect();
        return c;
      }),
    );
    const loops = clients.map(async (c) => {
      while (!stop) {
        try {
          const r = await c.query("SELECT current_user AS u, pg_backend_pid() AS pid");
          expect(r.rows[0].u).toBe(role);
          queries++;
        } catch (err) {
          errors.push((err as Error).message);
        }
        await sleep(5);
      }
    });

    try {
      for (let i = 1; i <= ROTATIONS; i++) {
        await sleep(order === "alter-first" ? ROTATE_EVERY_MS : ROTATE_EVERY_MS - WINDOW_MS);
        const pw = `p${i}-${randomBytes(6).toString("hex")}`;
        passwords.push(pw);
        if (order === "alter-first") {
          await cluster.query(`ALTER ROLE ${role} PASSWORD '${pw}'`);
          writeSecret(secret, pw);
        } else {
          writeSecret(secret, pw);
          await sleep(WINDOW_MS);
          await cluster.query(`ALTER ROLE ${role} PASSWORD '${pw}'`);
        }
      }
      await sleep(1500);
    } finally {
      stop = true;
      await Promise.all(loops);
      for (const c of clients) await c.end().catch(() => {});
    }

    const opened = proxy.metrics.pool(
      [...proxy.pools.values()].find((p) => p.user === role) as never,
    ).serversOpened;
    const refreshes = await counter(proxy, "pgsidecar_credential_refreshes_total");
    const retries = await counter(proxy, "pgsidecar_credential_login_retries_total");
    const metricsText = await proxy.metrics.registry.metrics();
    await proxy.stop();

    const summary = { source, order, queries, opened, refreshes, retries, errors: errors.length };
    console.log(JSON.stringify(summary));
    expect(errors, JSON.stringify(summary)).toEqual([]);
    // New servers logged in all along, through every rotation.
    expect(queries).toBeGreaterThan(500);
    expect(opened).toBeGreaterThan(ROTATIONS * 2);
    // Every new password was seen, and no retry after a 28P01 was refused.
    expect(refreshes[`${source},changed`]).toBeGreaterThanOrEqual(ROTATIONS);
    expect(retries[`${source},failed`]).toBe(0);
    if (order === "source-first") expect(retries[`${source},succeeded`]).toBeGreaterThan(0);
    // No password in any log line or metric.
    const logText = logs.join("");
    expect(logText).toMatch(/upstream password changed/);
    for (const pw of [...passwords, clientPassword]) {
      expect(logText).not.toContain(pw);
      expect(metricsText).not.toContain(pw);
    }
  }

  it("a password_file the server never accepts: the client gets the server's 28P01 after two relogins, not a hang", async () => {
    const role = "rot_wrong";
    await cluster.createUser(role, "the-real-one");
    const secret = join(dir, `${role}.password`);
    writeSecret(secret, "not-the-real-one");
    const proxy = new Sidecar(
      loadConfig({
        argv: {
          listen: "127.0.0.1:0",
          http_listen: "off",
          upstream: `postgres://${role}@127.0.0.1:${cluster.port}/postgres`,
          users: [{ name: role, password_file: secret }],
        },
        env: {},
      }),
      pino({ level: "silent" }),
    );
    await proxy.start();
    try {
      const c = new pg.Client({
        host: "127.0.0.1",
        port: proxy.port,
        user: role,
        password: "not-the-real-one",
        database: "postgres",
      });
      c.on("error", () => {});
      const t0 = Date.now();
      const err = await c
        .connect()
        .then(() => c.query("SELECT 1"))
        .then(
          () => null,
          (e: { code?: string; message: string }) => e,
        );
      await c.end().catch(() => {});
      expect(err?.code).toBe("28P01");
      expect(err?.message).toMatch(/password authentication failed/);
      expect(Date.now() - t0).toBeLessThan(10_000);
      const retries = await counter(proxy, "pgsidecar_credential_login_retries_total");
      expect(retries["file,failed"]).toBe(1);
      expect(retries["file,succeeded"]).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  for (const source of ["file", "command"] as const) {
    it(`${source === "file" ? "password_file" : "password_command"}: ALTER ROLE, then the source right after: 0 client errors`, async () => {
      await rotation(source, "alter-first");
    }, 60_000);
    it(`${source === "file" ? "password_file" : "password_command"}: the source first, ALTER ROLE 1 s later (a 28P01 window): 0 client errors`, async () => {
      await rotation(source, "source-first");
    }, 60_000);
  }
});
