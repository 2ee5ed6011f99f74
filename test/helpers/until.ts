// Polls a condition until it holds: the one waiting helper of the tests (bounded, never retried
// into a pass: the caller's assertion comes after it).

/**
 * Resolves once `fn` returns true; throws naming `what` after `timeoutMs`. `what` may be a
 * function, called only then, to put what was seen so far (a log, an output) in the error.
 */
export async function until(
  what: string | (() => string),
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) {
      const described = typeof what === "string" ? what : what();
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${described}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
