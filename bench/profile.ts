// Summarizes a V8 .cpuprofile (node --cpu-prof): self and inclusive time per function, as text.

import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  fn: string;
  selfMs: number;
  totalMs: number;
  selfPct: number;
  totalPct: number;
}

export interface ProfileSummary {
  /** Sampled time, idle excluded, in ms. */
  busyMs: number;
  idleMs: number;
  bySelf: ProfileRow[];
  byTotal: ProfileRow[];
}

function label(f: CallFrame, root: string): string {
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  let url = f.url.replace(/^file:\/\//, "");
  if (url.startsWith(root)) url = url.slice(root.length);
  return `${name} ${url}:${f.lineNumber + 1}`;
}

export function summarizeProfile(path: string, root: string): ProfileSummary {
  const p = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const keyOf = new Map<number, string>();
  for (const n of p.nodes) keyOf.set(n.id, label(n.callFrame, root));
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let idleMs = 0;
  let busyMs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const id = p.samples[i];
    const key = keyOf.get(id) ?? "?";
    if (key === "(idle)") {
      idleMs += dt;
      continue;
    }
    busyMs += dt;
    self.set(key, (self.get(key) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = keyOf.get(cur) ?? "?";
      if (k === "(root)" || seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + dt);
    }
  }
  const rows = [...new Set([...self.keys(), ...total.keys()])].map((fn) => ({
    fn,
    selfMs: self.get(fn) ?? 0,
    totalMs: total.get(fn) ?? 0,
    selfPct: (100 * (self.get(fn) ?? 0)) / busyMs,
    totalPct: (100 * (total.get(fn) ?? 0)) / busyMs,
  }));
  return {
    busyMs,
    idleMs,
    bySelf: [...rows].sort((a, b) => b.selfMs - a.selfMs),
    byTotal: [...rows].sort((a, b) => b.totalMs - a.totalMs),
  };
}

export function formatProfile(s: ProfileSummary, top = 30): string {
  const line = (r: ProfileRow) =>
    `${r.selfPct.toFixed(1).padStart(5)}% ${r.totalPct.toFixed(1).padStart(5)}%  ${r.fn}`;
  return [
    `busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms`,
    " self%  total%  (by self time)",
    ...s.bySelf.slice(0, top).map(line),
    "",
    " self%  total%  (by inclusive time)",
    ...s.byTotal.slice(0, top).map(line),
  ].join("\n");
}
