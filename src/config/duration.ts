// Durations and sizes as people write them ("300ms", "8MB") <-> the integers Config holds (ms, bytes).

/**
 * The largest delay Node's timers honour: setTimeout() fires at once (with a warning) past
 * 2^31 - 1 ms (~24.8 days), so a longer timeout would silently become "immediately".
 */
export const MAX_DURATION_MS = 2_147_483_647;

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
};

// Postgres (guc.c memory units) and PgBouncer count a kB as 1024 bytes; we do the same.
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const NUMBER_WITH_UNIT = /^([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)$/;

export const DURATION_EXPECTED =
  'a duration: seconds as a number (5, 0.5) or a string with a unit ("300ms", "5s", "2m", "1h")';
export const SIZE_EXPECTED = 'a size: a byte count or a string with a unit ("64kB", "8MB", "1GB")';

/**
 * Parses a duration into whole milliseconds. A bare number (or numeric string) is seconds,
 * as in PgBouncer. Returns undefined when `raw` is not a duration or not a whole number of ms.
 */
export function parseDuration(raw: unknown): number | undefined {
  let ms: number;
  if (typeof raw === "number") {
    ms = raw * 1000;
  } else if (typeof raw === "string") {
    const m = NUMBER_WITH_UNIT.exec(raw.trim());
    if (m === null) return undefined;
    const unit = m[2].toLowerCase();
    const factor = unit === "" ? 1000 : DURATION_UNITS[unit];
    if (factor === undefined) return undefined;
    ms = Number(m[1]) * factor;
  } else {
    return undefined;
  }
  // Round away binary noise (0.3 s * 1000 = 300.00000000000006) but refuse real sub-ms values,
  // which would otherwise round to 0 and turn a timeout off.
  const rounded = Math.round(ms);
  if (!Number.isFinite(ms) || ms < 0 || Math.abs(ms - rounded) > 1e-6) return undefined;
  return rounded;
}

/** Milliseconds -> the shortest exact spelling: "1h", "90s", "500ms", "0". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Parses a size into whole bytes; undefined when `raw` is not a size. */
export function parseSize(raw: unknown): number | undefined {
  let bytes: number;
  if (typeof raw === "number") {
    bytes = raw;
  } else if (typeof raw === "string") {
    const m = NUMBER_WITH_UNIT.exec(raw.trim());
    if (m === null) return undefined;
    const unit = m[2].toLowerCase();
    const factor = unit === "" ? 1 : SIZE_UNITS[unit];
    if (factor === undefined) return undefined;
    bytes = Number(m[1]) * factor;
  } else {
    return undefined;
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) return undefined;
  return bytes;
}

/** Bytes -> "64MB", "1GB", "64kB" when exact, else the byte count. */
export function formatSize(bytes: number): string {
  if (bytes === 0) return "0";
  if (bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GB`;
  if (bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MB`;
  if (bytes % 1024 === 0) return `${bytes / 1024}kB`;
  return String(bytes);
}
