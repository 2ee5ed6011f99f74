// Which addresses stay on this machine: the loopback ranges and the name "localhost". Used where
// a secret may travel unencrypted (trust logins, upstream passwords without TLS, /status).

import net from "node:net";

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * Whether `host` (an IP address as a socket reports it, or a configured host name) is loopback:
 * 127.0.0.0/8 or ::1 in any spelling, IPv4-mapped ones included (::ffff:127.0.0.1, how a
 * dual-stack socket reports an IPv4 peer), or "localhost" (RFC 6761 keeps it on loopback). Any
 * other name is not: what it resolves to can change.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  switch (net.isIP(h)) {
    case 4:
      return LOOPBACK.check(h, "ipv4");
    case 6:
      return LOOPBACK.check(h, "ipv6");
    default:
      return false;
  }
}
