// Clock: the one source of time and timers for the pool and the servers (check delay, lifetime,
// idle timeouts, backoff, connect and reset timeouts). Each call reaches the global timers at call
// time, so a test that runs vi.useFakeTimers() drives every one of them.

/** A pending timer, as `after()` returns it. */
export type Timer = ReturnType<typeof setTimeout>;

/** The time now, in epoch milliseconds. */
export function now(): number {
  return Date.now();
}

/**
 * Runs `fn` once after `ms` milliseconds. The timer never keeps the process alive by itself: the
 * sockets and the listener do, and a timer left behind must not delay an exit.
 */
export function after(ms: number, fn: () => void): Timer {
  const timer = setTimeout(fn, ms);
  timer.unref?.();
  return timer;
}

/** Stops a timer from `after()` (nothing happens for null or a timer that already ran). */
export function cancel(timer: Timer | null | undefined): void {
  if (timer) clearTimeout(timer);
}

/** Runs `fn` on the next turn of the event loop, after the I/O callbacks already due. */
export function soon(fn: () => void): void {
  setImmediate(fn);
}
