// Cost of the session-state prefilter (src/sql/prefilter.ts) per statement, and of the parser
// behind it, on pgbench's statements: `node dist-tools/bench/sql-prefilter.js [calls]` after
// `tsc -p tsconfig.tools.json`. Prints ns per call, averaged; no thresholds.

import { detectSessionState } from "../src/frontend/session-state.js";
import { loadSqlParser } from "../src/sql/parser.js";
import { mayCarrySessionState } from "../src/sql/prefilter.js";

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

async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 1_000_000);
  await loadSqlParser();
  const rows: string[] = [];
  for (const [name, sql] of STATEMENTS) {
    // A Query (F) frame: the statement sits inside a larger buffer, as on the wire.
    const b = Buffer.from(`Q\0\0\0\0${sql}\0`);
    const end = b.length - 1;
    let hits = 0;
    const prefilter = nsPerCall(() => {
      if (mayCarrySessionState(b, 5, end)) hits++;
    }, calls);
    const detect = nsPerCall(() => detectSessionState(b, 5, end), calls);
    let sink = 0;
    const floor = nsPerCall(() => {
      sink += sumBytes(b, 5, end);
    }, calls);
    rows.push(
      [
        name.padEnd(16),
        `${end - 5} bytes`.padStart(9),
        `prefilter ${prefilter.toFixed(1).padStart(6)} ns`,
        `detectSessionState ${detect.toFixed(1).padStart(6)} ns`,
        `(byte-sum floor ${floor.toFixed(1)} ns${sink > 0 ? "" : "."})`,
        hits > 0 ? "goes to the parser" : "",
      ].join("  "),
    );
  }
  for (const [name, sql] of PARSED) {
    const b = Buffer.from(sql);
    const detect = nsPerCall(() => detectSessionState(b, 0, b.length), Math.ceil(calls / 100));
    rows.push(`${name.padEnd(27)}  detectSessionState ${detect.toFixed(0).padStart(6)} ns`);
  }
  console.log(`${calls} calls each (parsed ones: ${Math.ceil(calls / 100)})`);
  for (const row of rows) console.log(row);
}

await main();
