// The integration project's globalSetup: one throwaway cluster for the whole run, shared by the
// healthy-path files through sharedCluster() (shared-cluster.ts). Fault files start their own.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { TestProject } from "vitest/node";
import { type PgCluster, startCluster } from "./pg-cluster.js";
import type { SharedClusterInfo } from "./shared-cluster.js";

async function start(project: TestProject): Promise<PgCluster> {
  const cluster = await startCluster();
  // pg-cluster.ts writes the server log beside the data dir; workers read it from there.
  const logFile = join(dirname(cluster.dataDir), "server.log");
  if (!existsSync(logFile)) {
    await cluster.destroy();
    throw new Error(`no server log at ${logFile}: pg-cluster.ts keeps it elsewhere now`);
  }
  const info: SharedClusterInfo = {
    host: cluster.host,
    port: cluster.port,
    superuser: cluster.superuser,
    password: cluster.password,
    socketDir: cluster.socketDir,
    dataDir: cluster.dataDir,
    logFile,
  };
  project.provide("sharedCluster", info);
  return cluster;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let cluster = await start(project);
  // Watch mode: a rerun gets a fresh cluster, so the files' CREATE ROLE/DATABASE find no leftovers.
  project.onTestsRerun(async () => {
    await cluster.destroy();
    cluster = await start(project);
  });
  return () => cluster.destroy();
}
