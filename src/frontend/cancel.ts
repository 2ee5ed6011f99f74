// CancelRegistry: the BackendKeyData we issued to each client, so a CancelRequest on a new
// connection finds the session it targets (and, through it, the real server key).

import { randomBytes, randomInt, timingSafeEqual } from "node:crypto";

export interface Cancellable {
  /**
   * Forwards a cancel to the server currently running this client's work, if any: never to one
   * the client has released (see ClientSession.cancelCurrent for the race that remains).
   */
  cancelCurrent(): void;
}

interface Entry {
  secret: Buffer;
  target: Cancellable;
}

export class CancelRegistry {
  private readonly byPid = new Map<number, Entry>();

  /** Issues a fresh key: 4 secret bytes for protocol 3.0, 32 for 3.2 (as Postgres 18 does). */
  issue(target: Cancellable, secretBytes: number): { pid: number; secret: Buffer } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.byPid.has(pid));
    const secret = randomBytes(secretBytes);
    this.byPid.set(pid, { secret, target });
    return { pid, secret };
  }

  release(pid: number): void {
    this.byPid.delete(pid);
  }

  /** Returns true when the key matched and the cancel was passed on. */
  cancel(pid: number, secret: Buffer): boolean {
    const entry = this.byPid.get(pid);
    if (!entry || entry.secret.length !== secret.length) return false;
    if (!timingSafeEqual(entry.secret, secret)) return false;
    entry.target.cancelCurrent();
    return true;
  }

  get size(): number {
    return this.byPid.size;
  }
}
