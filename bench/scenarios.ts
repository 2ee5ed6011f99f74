// The benchmark's scenarios: pgbench runs at 32 and 200 clients (throughput and CPU per
// transaction), at 1 and 4 clients (latency added per query), and the seed's psycopg workload.

import type { Scenario } from "./report.js";

export const SCENARIOS: Scenario[] = [
  {
    id: "select-simple-32",
    label: "select-only, -M simple, 32 clients",
    selectOnly: true,
    mode: "simple",
    clients: 32,
  },
  {
    id: "select-extended-32",
    label: "select-only, -M extended, 32 clients",
    selectOnly: true,
    mode: "extended",
    clients: 32,
  },
  {
    id: "select-prepared-32",
    label: "select-only, -M prepared, 32 clients",
    selectOnly: true,
    mode: "prepared",
    clients: 32,
  },
  {
    id: "tpcb-32",
    label: "TPC-B-like, -M simple, 32 clients",
    selectOnly: false,
    mode: "simple",
    clients: 32,
  },
  {
    // Every client SETs search_path: before settings travelled, each SET pinned its client to a
    // server (32 clients, 10 servers: the rest waited); now they share the pool.
    id: "select-set-32",
    label: "select-only with a session SET per transaction, -M simple, 32 clients",
    selectOnly: true,
    script:
      "\\set aid random(1, 100000 * :scale)\nSET search_path = public;\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n",
    mode: "simple",
    clients: 32,
  },
  {
    id: "select-simple-200",
    label: "select-only, -M simple, 200 clients",
    selectOnly: true,
    mode: "simple",
    clients: 200,
  },
  {
    id: "tpcb-200",
    label: "TPC-B-like, -M simple, 200 clients",
    selectOnly: false,
    mode: "simple",
    clients: 200,
  },
  // Latency: one pgbench thread, so pgbench's own scheduling adds as little as it can.
  {
    id: "latency-simple-1",
    label: "select-only, -M simple, 1 client",
    selectOnly: true,
    mode: "simple",
    clients: 1,
    threads: 1,
    latency: true,
  },
  {
    id: "latency-extended-1",
    label: "select-only, -M extended, 1 client",
    selectOnly: true,
    mode: "extended",
    clients: 1,
    threads: 1,
    latency: true,
  },
  {
    id: "latency-simple-4",
    label: "select-only, -M simple, 4 clients",
    selectOnly: true,
    mode: "simple",
    clients: 4,
    threads: 1,
    latency: true,
  },
  {
    id: "latency-extended-4",
    label: "select-only, -M extended, 4 clients",
    selectOnly: true,
    mode: "extended",
    clients: 4,
    threads: 1,
    latency: true,
  },
];

/** Not a pgbench scenario: demo/checkpointer_workload.py (psycopg 3), see bench/seed.ts. */
export const SEED_ID = "seed";
export const SEED_LABEL = "seed workload: psycopg 3 checkpointer mix, 20 tasks";

/** `--quick`: what the targets need, in under 2 minutes. */
export const QUICK_IDS = [
  "select-simple-32",
  "select-extended-32",
  "select-prepared-32",
  "tpcb-32",
  "latency-simple-1",
  SEED_ID,
];

export const ALL_IDS = [...SCENARIOS.map((s) => s.id), SEED_ID];

export function scenarioHelp(): string {
  return [
    ...SCENARIOS.map((s) => `\n  ${s.id.padEnd(20)}${s.label}`),
    `\n  ${SEED_ID.padEnd(20)}${SEED_LABEL}`,
  ].join("");
}
