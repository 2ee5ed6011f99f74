// WaitQueue with fake timers: FIFO order, each waiter expires at its own query_wait_timeout, and
// the whole queue runs on one timer (a waiter starts none of its own).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Waiter, WaitQueue } from "../../src/backend/waiters.js";

describe("WaitQueue", () => {
  let expired: string[];
  let queue: WaitQueue;
  const names = new Map<Waiter, string>();
  const add = (name: string, timeoutMs: number) => {
    const w = queue.add(() => {}, timeoutMs);
    names.set(w, name);
    return w;
  };

  beforeEach(() => {
    vi.useFakeTimers();
    expired = [];
    names.clear();
    queue = new WaitQueue((w) => expired.push(names.get(w) as string));
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it("serves waiters in arrival order, skipping withdrawn ones", () => {
    const a = add("a", 1000);
    const b = add("b", 1000);
    add("c", 1000);
    b.cancel();
    expect(queue.size).toBe(2);
    expect(queue.take()).toBe(a);
    expect(names.get(queue.take() as Waiter)).toBe("c");
    expect(queue.take()).toBeNull();
    expect(queue.size).toBe(0);
  });

  it("expires each waiter at its own deadline, and not before", () => {
    add("a", 1000);
    vi.advanceTimersByTime(400);
    add("b", 1000);
    vi.advanceTimersByTime(599);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(["a"]);
    expect(queue.size).toBe(1);
    vi.advanceTimersByTime(399);
    expect(expired).toEqual(["a"]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(["a", "b"]);
    expect(queue.size).toBe(0);
  });

  it("starts one timer for a whole queue of waiters", () => {
    const timerStarts = vi.spyOn(globalThis, "setTimeout");
    for (let i = 0; i < 50; i++) add(`w${i}`, 1000);
    expect(timerStarts).toHaveBeenCalledTimes(1);
    // Served in time: nobody expires, and the timer finds no one left.
    for (let i = 0; i < 50; i++) queue.take();
    vi.advanceTimersByTime(5000);
    expect(expired).toEqual([]);
    expect(timerStarts).toHaveBeenCalledTimes(1);
  });

  it("never expires a waiter that was served or withdrawn", () => {
    add("a", 1000);
    const b = add("b", 1000);
    add("c", 1000);
    queue.take();
    b.cancel();
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual(["c"]);
  });

  it("expires a later waiter with a shorter timeout (a reload lowered it) at its own deadline", () => {
    add("long", 10_000);
    vi.advanceTimersByTime(100);
    add("short", 1000);
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual(["short"]);
    vi.advanceTimersByTime(8899);
    expect(expired).toEqual(["short"]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(["short", "long"]);
  });

  it("expires every waiter due at one firing, in arrival order, once each", () => {
    for (const name of ["a", "b", "c"]) add(name, 1000);
    vi.advanceTimersByTime(5);
    add("d", 1000);
    vi.advanceTimersByTime(995);
    expect(expired).toEqual(["a", "b", "c"]);
    expect(queue.size).toBe(1);
    vi.advanceTimersByTime(5);
    expect(expired).toEqual(["a", "b", "c", "d"]);
    expect(queue.take()).toBeNull();
  });

  it("expires on time when the wall clock is set back while a client waits", () => {
    add("a", 1000);
    vi.setSystemTime(Date.now() - 60_000);
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual(["a"]);
  });

  it("never expires a waiter without a timeout (0)", () => {
    add("forever", 0);
    vi.advanceTimersByTime(10 * 60_000);
    expect(expired).toEqual([]);
    expect(queue.size).toBe(1);
  });

  it("keeps its timer for waiters queued by an expiring waiter's callback", () => {
    queue = new WaitQueue((w) => {
      expired.push(names.get(w) as string);
      if (names.get(w) === "a") add("again", 1000);
    });
    add("a", 1000);
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual(["a"]);
    expect(queue.size).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual(["a", "again"]);
  });
});
