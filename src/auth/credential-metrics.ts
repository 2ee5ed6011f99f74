// The credential counters on the sidecar's registry: refreshes of a rotating upstream password
// (password_file, password_command, RDS IAM tokens) and the one login retry after a 28P01. Rare events: plain
// prom-client counters, every label value from a closed set and present from the start at 0.

import client from "prom-client";
import {
  type CredentialEvents,
  RefreshOutcome,
  RetryOutcome,
  ROTATING_SOURCES,
} from "./upstream-password.js";

export function credentialMetrics(registry: client.Registry): CredentialEvents {
  const refreshes = new client.Counter({
    name: "pgsidecar_credential_refreshes_total",
    help: "Re-reads of a rotating upstream password (source: file = a users password_file, command = password_command, aws-rds-iam = an RDS IAM token minted), by what they found: changed, unchanged, failed (the last value is kept).",
    labelNames: ["source", "outcome"],
    registers: [registry],
  });
  const retries = new client.Counter({
    name: "pgsidecar_credential_login_retries_total",
    help: "Server logins retried once after the upstream refused a rotating password (28P01), by source and outcome: succeeded (the client saw nothing) or failed (the client got the 28P01).",
    labelNames: ["source", "outcome"],
    registers: [registry],
  });
  for (const source of ROTATING_SOURCES) {
    for (const outcome of RefreshOutcome) refreshes.inc({ source, outcome }, 0);
    for (const outcome of RetryOutcome) retries.inc({ source, outcome }, 0);
  }
  return {
    refreshed: (source, outcome) => refreshes.inc({ source, outcome }),
    retried: (source, outcome) => retries.inc({ source, outcome }),
  };
}
