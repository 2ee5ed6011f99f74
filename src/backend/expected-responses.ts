// ExpectedResponses: the FIFO of replies a backend still owes for the messages sent to it, each
// marked forward (to the client), ignore (we injected the request) or simulate (we answer it
// ourselves, in order). Backed by a growable ring so the relay path allocates nothing.

import { FrontendCode } from "../protocol/codes.js";

export const Action = {
  Forward: 0,
  Ignore: 1,
  Simulate: 2,
} as const;
export type Action = (typeof Action)[keyof typeof Action];

/** What others may read of the replies a server owes (only BackendConnection changes them). */
export interface OwedReplies {
  readonly length: number;
  readonly empty: boolean;
  pendingReadyForQuery(): number;
}

export class ExpectedResponses implements OwedReplies {
  private codes = new Uint8Array(64);
  private actions = new Uint8Array(64);
  /** Simulated reply bytes, or the statement name an injected/forwarded Parse prepares. */
  private payloads: Array<Buffer | string | null> = new Array(64).fill(null);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  get empty(): boolean {
    return this.count === 0;
  }

  /** Queues the reply owed for a client message of type `code` (Flush and CopyData owe none). */
  push(code: number, action: Action, payload: Buffer | string | null = null): void {
    if (this.count === this.codes.length) this.grow();
    const i = (this.head + this.count) & (this.codes.length - 1);
    this.codes[i] = code;
    this.actions[i] = action;
    this.payloads[i] = payload;
    this.count++;
  }

  get headCode(): number {
    return this.codes[this.head];
  }

  get headAction(): Action {
    return this.actions[this.head] as Action;
  }

  get headPayload(): Buffer | string | null {
    return this.payloads[this.head];
  }

  shift(): void {
    this.payloads[this.head] = null;
    this.head = (this.head + 1) & (this.codes.length - 1);
    this.count--;
  }

  /** ReadyForQuery messages still owed to the client (its Sync / Query / FunctionCall). */
  pendingReadyForQuery(): number {
    let n = 0;
    const mask = this.codes.length - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      // Only the client's own requests: not a Query we injected (a SET) and ignore.
      if (this.actions[i] !== Action.Forward) continue;
      const c = this.codes[i];
      if (c === FrontendCode.Sync || c === FrontendCode.Query || c === FrontendCode.FunctionCall)
        n++;
    }
    return n;
  }

  /** Visits every entry in order (for replaying or failing them). */
  forEach(fn: (code: number, action: Action, payload: Buffer | string | null) => void): void {
    const mask = this.codes.length - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      fn(this.codes[i], this.actions[i] as Action, this.payloads[i]);
    }
  }

  clear(): void {
    this.payloads.fill(null);
    this.head = 0;
    this.count = 0;
  }

  private grow(): void {
    const size = this.codes.length * 2;
    const codes = new Uint8Array(size);
    const actions = new Uint8Array(size);
    const payloads: Array<Buffer | string | null> = new Array(size).fill(null);
    const mask = this.codes.length - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      codes[k] = this.codes[i];
      actions[k] = this.actions[i];
      payloads[k] = this.payloads[i];
    }
    this.codes = codes;
    this.actions = actions;
    this.payloads = payloads;
    this.head = 0;
  }
}
