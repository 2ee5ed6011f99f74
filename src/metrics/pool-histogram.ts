// A histogram whose buckets live in PoolStats (Buckets), exported at scrape time. prom-client's own
// Histogram hashes its label set on every observe(); this one never sees the hot path.

import client from "prom-client";
import { type Buckets, LATENCY_BUCKETS, type PoolStats } from "./pool-stats.js";

type PoolLabels = { database: string; user: string };

export class PoolHistogram extends client.Histogram<"database" | "user"> {
  constructor(
    private readonly metricName: string,
    private readonly helpText: string,
    registry: client.Registry,
    private readonly pools: () => Iterable<PoolStats>,
    private readonly pick: (s: PoolStats) => Buckets,
  ) {
    super({
      name: metricName,
      help: helpText,
      labelNames: ["database", "user"],
      buckets: [...LATENCY_BUCKETS],
      // Not prom-client's global registry: every Sidecar in a process has its own.
      registers: [],
    });
    registry.registerMetric(this);
  }

  private values() {
    const out: Array<{
      labels: Record<string, string | number>;
      value: number;
      metricName: string;
    }> = [];
    for (const s of this.pools()) {
      const b = this.pick(s);
      const labels: PoolLabels = { database: s.database, user: s.user };
      let acc = 0;
      for (let i = 0; i < b.bounds.length; i++) {
        acc += b.counts[i];
        out.push({
          labels: { ...labels, le: b.bounds[i] },
          value: acc,
          metricName: `${this.metricName}_bucket`,
        });
      }
      out.push({
        labels: { ...labels, le: "+Inf" },
        value: b.count,
        metricName: `${this.metricName}_bucket`,
      });
      out.push({ labels: { ...labels }, value: b.sum, metricName: `${this.metricName}_sum` });
      out.push({ labels: { ...labels }, value: b.count, metricName: `${this.metricName}_count` });
    }
    return out;
  }

  /** What the registry renders as text (prom-client calls this in preference to get()). */
  async getForPromString() {
    return this.get();
  }

  override async get() {
    return {
      name: this.metricName,
      help: this.helpText,
      type: "histogram",
      aggregator: "sum",
      values: this.values(),
    } as unknown as client.MetricObjectWithValues<client.MetricValueWithName<string>>;
  }
}
