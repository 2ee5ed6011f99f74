// Test projects: unit (fast, parallel), integration and chaos (real Postgres clusters, one file at a time).
import { defineConfig } from "vitest/config";

/**
 * chaos is slow and disruptive, so plain `vitest run` leaves it out. It is included when CHAOS=1,
 * or when the command line selects it (`vitest run --project chaos`, `--project=chaos`).
 */
function chaosRequested(argv: readonly string[]): boolean {
  if (process.env.CHAOS === "1") return true;
  return argv.some(
    (arg, i) =>
      (arg === "--project" && /chaos/.test(argv[i + 1] ?? "")) ||
      (arg.startsWith("--project=") && /chaos/.test(arg)),
  );
}

// Files start their own proxies (and fault files their own clusters); with 2 cores, and so that
// files sharing the one cluster never meet, files run one after another.
const serverProject = {
  fileParallelism: false,
  testTimeout: 60_000,
  hookTimeout: 120_000,
  teardownTimeout: 60_000,
} as const;

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          // One cluster for the healthy-path files (test/helpers/shared-cluster.ts).
          globalSetup: ["test/helpers/shared-cluster-setup.ts"],
          ...serverProject,
        },
      },
      ...(chaosRequested(process.argv)
        ? [
            {
              test: {
                name: "chaos",
                include: ["test/chaos/**/*.test.ts"],
                ...serverProject,
              },
            },
          ]
        : []),
    ],
  },
});
