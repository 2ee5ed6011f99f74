// A counter or gauge with one series per pool (database, user, and its own labels), filled afresh
// at each scrape from rows the caller reads out of PoolStats or a PoolSnapshot.

import client from "prom-client";

export type Row = [Record<string, string>, number];

export function perPoolMetric<P extends { database: string; user: string }>(
  kind: "counter" | "gauge",
  reg: client.Registry,
  pools: () => Iterable<P>,
  name: string,
  help: string,
  extra: string[],
  rows: (p: P) => Iterable<Row>,
): void {
  const labelNames = ["database", "user", ...extra];
  const fill = (put: (labels: Record<string, string>, value: number) => void) => {
    for (const p of pools())
      for (const [l, v] of rows(p)) put({ database: p.database, user: p.user, ...l }, v);
  };
  const config = { name, help, labelNames, registers: [reg] };
  if (kind === "counter") {
    new client.Counter({
      ...config,
      collect() {
        this.reset();
        fill((l, v) => this.inc(l, v));
      },
    });
  } else {
    new client.Gauge({
      ...config,
      collect() {
        this.reset();
        fill((l, v) => this.set(l, v));
      },
    });
  }
}
