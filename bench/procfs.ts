// /proc readers for the benchmark: a process's CPU time (utime + stime) and resident memory.
// Linux only; every figure covers all threads of the process (libuv pool and GC threads included).

import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

let ticksPerSecond = 0;

/** sysconf(_SC_CLK_TCK): the unit of utime/stime in /proc/PID/stat (100 on Linux). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === 0) {
    try {
      ticksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    } catch {
      ticksPerSecond = 100;
    }
    if (!Number.isFinite(ticksPerSecond) || ticksPerSecond <= 0) ticksPerSecond = 100;
  }
  return ticksPerSecond;
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid ..." : the fields after ')' start at field 3 (state).
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of one process, in milliseconds; 0 if it is gone. */
export function cpuMs(pid: number): number {
  const f = statFields(pid);
  if (f === null) return 0;
  // Field 14 is utime, 15 stime (1-based, man 5 proc); f[0] is field 3.
  const ticks = Number(f[11]) + Number(f[12]);
  return (ticks * 1000) / clockTicksPerSecond();
}

/** Sum of cpuMs over several processes. */
export function totalCpuMs(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += cpuMs(pid);
  return sum;
}

/** The machine's CPU time so far (/proc/stat "cpu" line, in ticks): all of it, and stolen. */
export interface MachineTicks {
  total: number;
  steal: number;
}

/**
 * user + nice + system + idle + iowait + irq + softirq + steal, and steal: time the hypervisor ran
 * someone else while one of our vCPUs wanted to run. On a shared VM it is what turns a quiet
 * machine into a slow one from one minute to the next.
 */
export function machineTicks(): MachineTicks {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
  } catch {
    return { total: 0, steal: 0 };
  }
}

/** Percent of the machine's CPU time stolen between two readings (NaN when unknown). */
export function stealPct(before: MachineTicks, after: MachineTicks): number {
  const total = after.total - before.total;
  return total > 0 ? (100 * (after.steal - before.steal)) / total : Number.NaN;
}

/** VmRSS of one process in KiB; 0 if it is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function totalRssKiB(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) sum += rssKiB(pid);
  return sum;
}

/** Direct children of `pid` (by the ppid field of every /proc/N/stat). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f !== null && Number(f[1]) === pid) out.push(Number(name));
  }
  return out;
}
