// CancelRegistry: the BackendKeyData we issued to each client, so a CancelRequest on a new
// connection finds the session it targets (and, through it, the real server key).

import { randomBytes, randomInt, timingSafeEqual } from "node:crypto";

/**
 * A key's secret: 4 bytes (protocol 3.0) as an unsigned 32-bit number, so an idle client holds no
 * Buffer for it; 32 bytes (protocol 3.2) as a Buffer.
 */
export type CancelSecret = number | Buffer;

export interface CancelKey {
  pid: number;
  secret: CancelSecret;
}

export interface Cancellable {
  /** The secret of the key issued to it (read when a CancelRequest names its pid). */
  readonly cancelSecret: CancelSecret;
  /**
   * Forwards a cancel to the server currently running this client's work, if any: never to one
   * the client has released (see ClientSession.cancelCurrent for the race that remains).
   */
  cancelCurrent(): void;
}

/** A fresh secret of `bytes` bytes (4 or 32). */
export function newCancelSecret(bytes: number): CancelSecret {
  return bytes === 4 ? randomInt(0, 2 ** 32) : randomBytes(bytes);
}

/** The secret as BackendKeyData carries it. */
export function secretBytes(secret: CancelSecret): Buffer {
  if (typeof secret !== "number") return secret;
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(secret, 0);
  return b;
}

export class CancelRegistry {
  private readonly byPid = new Map<number, Cancellable>();

  /**
   * Registers `target` under a fresh pid (its secret is target.cancelSecret) and returns the pid.
   * Pids stay below 2^30, small integers V8 keeps without a heap number.
   */
  issue(target: Cancellable): number {
    let pid: number;
    do pid = randomInt(1, 0x3fffffff);
    while (this.byPid.has(pid));
    this.byPid.set(pid, target);
    return pid;
  }

  release(pid: number): void {
    this.byPid.delete(pid);
  }

  /** Returns true when the key matched and the cancel was passed on. */
  cancel(pid: number, secret: Buffer): boolean {
    const target = this.byPid.get(pid);
    if (!target) return false;
    const mine = secretBytes(target.cancelSecret);
    if (mine.length !== secret.length || !timingSafeEqual(mine, secret)) return false;
    target.cancelCurrent();
    return true;
  }

  get size(): number {
    return this.byPid.size;
  }
}
