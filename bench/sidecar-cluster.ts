// Runs pgsidecar as a node:cluster of workers sharing one listening port (the primary accepts and
// hands connections round-robin). Each worker is an ordinary `dist/cli.js` with its own pool, so N
// workers may open N x pool_size backend connections. For the benchmark's multi-core option only.
//
// usage: node sidecar-cluster.js <workers> "<node flags>" <path/to/cli.js> [pgsidecar flags...]

import cluster from "node:cluster";

const [count, flags, cli, ...args] = process.argv.slice(2);
const workers = Number(count);
if (!cluster.isPrimary || !Number.isInteger(workers) || workers < 1 || !cli) {
  process.stderr.write("usage: sidecar-cluster.js <workers> <node flags> <cli.js> [args...]\n");
  process.exit(2);
}

cluster.setupPrimary({
  exec: cli,
  args,
  execArgv: flags ? flags.split(" ").filter(Boolean) : [],
});
for (let i = 0; i < workers; i++) cluster.fork();

let stopping = false;
cluster.on("exit", (worker, code, signal) => {
  if (!stopping) process.stderr.write(`worker ${worker.process.pid} exited (${code ?? signal})\n`);
  if (Object.keys(cluster.workers ?? {}).length === 0 && stopping) process.exit(0);
});

function stop(signal: NodeJS.Signals): void {
  if (stopping) return;
  stopping = true;
  const live = Object.values(cluster.workers ?? {});
  if (live.length === 0) process.exit(0);
  for (const w of live) w?.process.kill(signal);
  setTimeout(() => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGKILL");
    process.exit(0);
  }, 8000).unref();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
