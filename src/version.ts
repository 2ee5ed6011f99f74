// pgsidecar's version, from package.json (src/ and dist/ both sit one level below it).

import { readFileSync } from "node:fs";

export const packageVersion: string = (() => {
  try {
    return JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version;
  } catch {
    return "unknown";
  }
})();
