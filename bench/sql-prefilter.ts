// Cost of the session-state prefilter (src/sql/prefilter.ts) per statement, and of the parser
// behind it, on pgbench's statements: `node dist-tools/bench/sql-prefilter.js [calls] [--json]`
// after `tsc -p tsconfig.tools.json`. Prints ns per call, averaged; no thresholds. `npm run bench`
// runs it as a child process with --json and puts the figures in its report.

import { detectSessionState } from "../src/frontend/session-state.js";
import { loadSqlParser } from "../src/sql/parser.js";
import { mayCarrySessionState } from "../src/sql/prefilter.js";
import type { PrefilterResult, PrefilterRow } from "./report.js";

const STATEMENTS: [name: string, sql: string][] = [
  ["select-only", "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"],
  ["tpcb accounts", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;"],
  ["tpcb tellers", "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;"],
  ["tpcb branches", "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;"],
  [
    "tpcb history",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
  ],
];
/** Through the parser, for comparison: what a statement the prefilter passes on costs. */
const PARSED: [name: string, sql: string][] = [
  ["SET (parsed)", "SET search_path = app, public"],
  ["set_config (parsed)", "SELECT set_config('app.tenant', $1, false)"],
];

/** Mean ns per call over `calls` calls; the best of three such runs (the machine is shared). */
function nsPerCall(fn: () => unknown, calls: number): number {
  for (let i = 0; i < Math.min(calls, 100_000); i++) fn(); // warm up
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < 3; run++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / calls);
  }
  return best;
}

/** The floor: reading every byte of the range once. */
function sumBytes(b: Buffer, start: number, end: number): number {
  let x = 0;
  for (let i = start; i < end; i++) x += b[i];
  return x;
}

async function measure(calls: number): Promise<PrefilterResult> {
  await loadSqlParser();
  const rows: PrefilterRow[] = [];
  let sink = 0;
  for (const [name, sql] of STATEMENTS) {
    // A Query (F) frame: the statement sits inside a larger buffer, as on the wire.
    const b = Buffer.from(`Q\0\0\0\0${sql}\0`);
    const end = b.length - 1;
    let hits = 0;
    const prefilterNs = nsPerCall(() => {
      if (mayCarrySessionState(b, 5, end)) hits++;
    }, calls);
    const detectNs = nsPerCall(() => detectSessionState(b, 5, end), calls);
    const floorNs = nsPerCall(() => {
      sink += sumBytes(b, 5, end);
    }, calls);
    rows.push({ name, bytes: end - 5, prefilterNs, detectNs, floorNs, toParser: hits > 0 });
  }
  const parsedCalls = Math.ceil(calls / 100);
  for (const [name, sql] of PARSED) {
    const b = Buffer.from(sql);
    const detectNs = nsPerCall(() => detectSessionState(b, 0, b.length), parsedCalls);
    rows.push({ name, bytes: null, prefilterNs: null, detectNs, floorNs: null, toParser: true });
  }
  if (sink < 0) console.log(sink); // keeps the floor loop from being optimised away
  return { calls, parsedCalls, rows };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const calls = Number(args.find((a) => !a.startsWith("--")) ?? 1_000_000);
  const r = await measure(calls);
  if (args.includes("--json")) {
    console.log(JSON.stringify(r));
    return;
  }
  console.log(`${r.calls} calls each (parsed ones: ${r.parsedCalls})`);
  for (const x of r.rows) {
    if (x.bytes === null) {
      console.log(
        `${x.name.padEnd(27)}  detectSessionState ${x.detectNs.toFixed(0).padStart(6)} ns`,
      );
      continue;
    }
    console.log(
      [
        x.name.padEnd(16),
        `${x.bytes} bytes`.padStart(9),
        `prefilter ${(x.prefilterNs ?? 0).toFixed(1).padStart(6)} ns`,
        `detectSessionState ${x.detectNs.toFixed(1).padStart(6)} ns`,
        `(byte-sum floor ${(x.floorNs ?? 0).toFixed(1)} ns)`,
        x.toParser ? "goes to the parser" : "",
      ].join("  "),
    );
  }
}

await main();
