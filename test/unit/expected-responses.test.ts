// ExpectedResponses: the replies a server owes, in the order it owes them, across the ring's wrap
// and growth; and which of them are the client's ReadyForQuery.
import { describe, expect, it } from "vitest";
import { Action, ExpectedResponses } from "../../src/backend/expected-responses.js";
import { FrontendCode } from "../../src/protocol/codes.js";

/** Every entry, head first. */
function entries(ex: ExpectedResponses): Array<[number, Action, Buffer | string | null]> {
  const out: Array<[number, Action, Buffer | string | null]> = [];
  ex.forEach((code, action, payload) => {
    out.push([code, action, payload]);
  });
  return out;
}

describe("ExpectedResponses", () => {
  it("gives the replies back in the order they were queued, with action and payload", () => {
    const ex = new ExpectedResponses();
    expect(ex.empty).toBe(true);
    ex.push(FrontendCode.Parse, Action.Ignore, "pgsc_1");
    ex.push(FrontendCode.Bind, Action.Forward);
    ex.push(FrontendCode.Close, Action.Simulate, Buffer.from("3"));
    expect(ex.length).toBe(3);
    expect([ex.headCode, ex.headAction, ex.headPayload]).toEqual([
      FrontendCode.Parse,
      Action.Ignore,
      "pgsc_1",
    ]);
    ex.shift();
    expect([ex.headCode, ex.headAction]).toEqual([FrontendCode.Bind, Action.Forward]);
    ex.shift();
    expect(ex.headPayload).toEqual(Buffer.from("3"));
    ex.shift();
    expect(ex.empty).toBe(true);
  });

  it("keeps FIFO order when the head passes the end of the ring", () => {
    const ex = new ExpectedResponses();
    for (let i = 0; i < 60; i++) ex.push(FrontendCode.Sync, Action.Forward, `s${i}`);
    for (let i = 0; i < 60; i++) ex.shift();
    // 60 slots used and freed: these ten sit in the last four slots and the first six.
    for (let i = 0; i < 10; i++) ex.push(FrontendCode.Describe, Action.Forward, `d${i}`);
    const seen: Array<Buffer | string | null> = [];
    while (!ex.empty) {
      expect(ex.headCode).toBe(FrontendCode.Describe);
      seen.push(ex.headPayload);
      ex.shift();
    }
    expect(seen).toEqual(Array.from({ length: 10 }, (_, k) => `d${k}`));
  });

  it("keeps FIFO order when the ring wraps and when it grows while wrapped", () => {
    const ex = new ExpectedResponses();
    let next = 0;
    let expectHead = 0;
    // Move the head well into the ring, then fill past its capacity (64) so it wraps and grows.
    for (let i = 0; i < 50; i++) ex.push(FrontendCode.Execute, Action.Forward, `s${next++}`);
    for (let i = 0; i < 40; i++) {
      expect(ex.headPayload).toBe(`s${expectHead++}`);
      ex.shift();
    }
    for (let i = 0; i < 200; i++) ex.push(FrontendCode.Execute, Action.Forward, `s${next++}`);
    expect(ex.length).toBe(210);
    expect(entries(ex).map(([, , p]) => p)).toEqual(
      Array.from({ length: 210 }, (_, k) => `s${k + 40}`),
    );
    while (!ex.empty) {
      expect(ex.headPayload).toBe(`s${expectHead++}`);
      ex.shift();
    }
    expect(expectHead).toBe(250);
  });

  it("counts only the client's own Sync, Query and FunctionCall as ReadyForQuery owed", () => {
    const ex = new ExpectedResponses();
    ex.push(FrontendCode.Query, Action.Ignore); // a SET we injected
    ex.push(FrontendCode.Parse, Action.Forward);
    ex.push(FrontendCode.Sync, Action.Forward);
    ex.push(FrontendCode.Query, Action.Forward);
    ex.push(FrontendCode.FunctionCall, Action.Forward);
    ex.push(FrontendCode.Close, Action.Simulate, Buffer.from("3"));
    expect(ex.pendingReadyForQuery()).toBe(3);
    ex.shift();
    ex.shift();
    ex.shift();
    expect(ex.pendingReadyForQuery()).toBe(2);
  });

  it("drops every entry and its payload on clear, and is usable after", () => {
    const ex = new ExpectedResponses();
    for (let i = 0; i < 70; i++) ex.push(FrontendCode.Sync, Action.Forward, `p${i}`);
    ex.clear();
    expect(ex.empty).toBe(true);
    expect(entries(ex)).toEqual([]);
    expect(ex.pendingReadyForQuery()).toBe(0);
    ex.push(FrontendCode.Query, Action.Forward, "after");
    expect(entries(ex)).toEqual([[FrontendCode.Query, Action.Forward, "after"]]);
  });
});
