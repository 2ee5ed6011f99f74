// Command-line options of `npm run bench` (bench/run.ts).

import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Scenario } from "./report.js";
import { ALL_IDS, QUICK_IDS, SCENARIOS, SEED_ID, scenarioHelp } from "./scenarios.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const HELP = `npm run bench -- [options]

Starts a throwaway Postgres (pgbench -i -s 10), PgBouncer, pgsidecar (transaction mode, the same
pool size) and node-relay (a 1:1 Node.js byte relay), runs pgbench through Postgres and each of
them interleaved, the seed's psycopg workload, then opens idle clients through each pooler and
times the SQL prefilter. Prints a Markdown report and writes bench/RESULTS.md.

Options:
  --seconds <s>       Length of each pgbench and seed run (default 10)
  --reps <n>          Interleaved repetitions of every (scenario, target) (default 3)
  --quick             Regression guard (under 2 minutes): 2 s, 1 repetition, the scenarios the
                      targets need (${QUICK_IDS.join(", ")}),
                      1,000 idle clients, RESULTS.md not written
  --idle <list>       Idle clients opened through each pooler, comma-separated counts, each on a
                      freshly started pooler (default 1000; 0 skips the test)
  --scenarios <list>  Comma-separated scenario ids (default all; see below)
  --no-baseline       Leave out node-relay, the trivial 1:1 Node.js TCP relay every pgsidecar figure
                      is compared with (on by default; --baseline is accepted and changes nothing)
  --workers <n>       Also run pgsidecar as a node:cluster of n workers (target "pgsidecar×n")
  --worker-pool-size <n>  Pool size of each worker (default: pool size / workers, rounded up)
  --pool-size <n>     Server connections per pooler (default 20)
  --max-steal <pct>   A round (each target once) in which a sample lost more than this share of the
                      machine to the hypervisor (/proc/stat steal) is taken again (default 5)
  --steal-retakes <n> At most this many retakes per round; the least disturbed take is kept
                      (default 2; --quick: 0)
  --threads <n>       pgbench -j for the 32- and 200-client scenarios (default 2; latency ones: 1)
  --seed-tasks <n>    Concurrent tasks of the seed workload (default 20)
  --seed-think-ms <ms>  Mean pause between a seed task's calls (default 0: throughput)
  --prefilter-calls <n> Calls per statement in the prefilter timing (default 1000000; 0 skips it)
  --compare <dir>     Also run the pgsidecar built in <dir> (its dist/cli.js; e.g. a git worktree of
                      an older commit after \`npm ci && npm run build\` there) as target
                      "pgsidecar@<label>", interleaved with the others: a before/after in one run
  --compare-label <s> Label of that target (default: the directory's name)
  --profile           Only profile pgsidecar (node --cpu-prof) on select-only simple and extended
  --profile-out <f>   Also write the profile summary to this file (and keep the .cpuprofile beside it)
  --out <file>        Where to write the report (default bench/RESULTS.md)
  --no-write          Print the report only
  -h, --help          This text

Scenarios:`;

export interface Options {
  quick: boolean;
  seconds: number;
  reps: number;
  idle: number[];
  baseline: boolean;
  /** The pgbench scenarios to run. */
  scenarios: Scenario[];
  /** Run the seed's psycopg workload. */
  seed: boolean;
  seedTasks: number;
  seedThinkMs: number;
  prefilterCalls: number;
  warmupSeconds: number;
  workers: number;
  workerPoolSize: number;
  poolSize: number;
  /** A round with a sample above this steal (%) is taken again, at most stealRetakes times. */
  maxStealPct: number;
  stealRetakes: number;
  threads: number;
  /** Another build's dist/cli.js to run beside this one, and its target's label. */
  compare: { cli: string; label: string } | null;
  profile: boolean;
  profileOut: string | null;
  out: string | null;
}

export function parseOptions(argv: string[] = process.argv.slice(2)): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: "string" },
      reps: { type: "string" },
      quick: { type: "boolean" },
      idle: { type: "string" },
      scenarios: { type: "string" },
      baseline: { type: "boolean" },
      "no-baseline": { type: "boolean" },
      workers: { type: "string" },
      "worker-pool-size": { type: "string" },
      "pool-size": { type: "string" },
      "max-steal": { type: "string" },
      "steal-retakes": { type: "string" },
      threads: { type: "string" },
      "seed-tasks": { type: "string" },
      "seed-think-ms": { type: "string" },
      "prefilter-calls": { type: "string" },
      compare: { type: "string" },
      "compare-label": { type: "string" },
      profile: { type: "boolean" },
      "profile-out": { type: "string" },
      out: { type: "string" },
      "no-write": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(`${HELP}${scenarioHelp()}\n`);
    process.exit(0);
  }
  const int = (v: string | undefined, d: number, name: string, min = 0): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name}: expected an integer ≥ ${min}, got ${v}`);
    return n;
  };
  const quick = values.quick === true;
  const ids = values.scenarios?.split(",").map((s) => s.trim()) ?? (quick ? QUICK_IDS : ALL_IDS);
  const unknown = ids.filter((id) => !ALL_IDS.includes(id));
  if (unknown.length > 0)
    throw new Error(`--scenarios: unknown id ${unknown.join(", ")} (known: ${ALL_IDS.join(", ")})`);
  const poolSize = int(values["pool-size"], 20, "pool-size", 1);
  const workers = int(values.workers, 1, "workers", 1);
  return {
    quick,
    seconds: int(values.seconds, quick ? 2 : 10, "seconds", 1),
    reps: int(values.reps, quick ? 1 : 3, "reps", 1),
    idle: (values.idle ?? "1000")
      .split(",")
      .map((v) => int(v.trim(), 0, "idle"))
      .filter((n) => n > 0),
    baseline: values["no-baseline"] !== true,
    scenarios: SCENARIOS.filter((s) => ids.includes(s.id)),
    seed: ids.includes(SEED_ID),
    seedTasks: int(values["seed-tasks"], 20, "seed-tasks", 1),
    seedThinkMs: int(values["seed-think-ms"], 0, "seed-think-ms", 0),
    prefilterCalls: int(values["prefilter-calls"], quick ? 100_000 : 1_000_000, "prefilter-calls"),
    warmupSeconds: quick ? 1 : 2,
    workers,
    workerPoolSize: int(
      values["worker-pool-size"],
      Math.ceil(poolSize / workers),
      "worker-pool-size",
      1,
    ),
    poolSize,
    maxStealPct: int(values["max-steal"], 5, "max-steal", 0),
    stealRetakes: int(values["steal-retakes"], quick ? 0 : 2, "steal-retakes", 0),
    threads: int(values.threads, 2, "threads", 1),
    compare: compareBuild(values.compare, values["compare-label"]),
    profile: values.profile === true,
    profileOut: values["profile-out"] ?? null,
    out:
      values["no-write"] || (quick && values.out === undefined)
        ? null
        : (values.out ?? join(ROOT, "bench", "RESULTS.md")),
  };
}

function compareBuild(dir: string | undefined, label: string | undefined): Options["compare"] {
  if (dir === undefined) return null;
  const cli = join(resolve(dir), "dist", "cli.js");
  if (!existsSync(cli)) throw new Error(`--compare: ${cli} not found (build it there first)`);
  return { cli, label: label ?? basename(resolve(dir)) };
}
