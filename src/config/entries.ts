// Structured settings, written in YAML (from env/CLI a YAML or JSON string): the databases map and
// the users list, with their keys checked and unknown ones hinted.

import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { closest } from "./hint.js";
import {
  ADMIN_DATABASE,
  type DatabaseSpec,
  type PoolMode,
  type RetryMode,
  type UrlParts,
  type UserConfig,
} from "./types.js";
import { parsePostgresUrl } from "./url.js";
import {
  at,
  InvalidValue,
  parseBool,
  quote,
  type SettingGroup,
  type SettingSpec,
} from "./validators.js";

export function structured(raw: unknown): unknown {
  if (typeof raw !== "string") return raw;
  try {
    return parseYaml(raw, { prettyErrors: false });
  } catch {
    // The string may hold passwords: never show it.
    throw new InvalidValue("YAML or JSON text", { value: raw, mask: "secret" });
  }
}

export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function checkKeys(entry: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(entry)) {
    if (known.includes(key)) continue;
    throw new InvalidValue(`one of the keys ${known.join(", ")}`, {
      path: [key],
      mask: "secret",
      unknownKey: { hint: closest(key, known), known },
    });
  }
}

const DATABASE_KEYS = ["upstream", "pool_size", "min_pool_size", "pool_mode", "retry"] as const;

export function databaseMap(o: {
  group: SettingGroup;
  doc: string;
  overrides: {
    pool_size: SettingSpec<number>;
    min_pool_size: SettingSpec<number>;
    pool_mode: SettingSpec<PoolMode>;
    retry: SettingSpec<RetryMode>;
  };
}): SettingSpec<ReadonlyArray<DatabaseSpec>> {
  return {
    group: o.group,
    type: "map of databases",
    default: {},
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const value = structured(raw);
      if (value === null || value === undefined) return [];
      if (!isMapping(value)) {
        throw new InvalidValue("a mapping of database name to {upstream: URL, ...}", {
          value: typeof raw === "string" ? raw : value,
          mask: typeof raw === "string" ? "url" : "none",
        });
      }
      return Object.entries(value).map(([name, entry]) =>
        at(name, entry, "url", (e) => parseDatabase(name, e, o.overrides)),
      );
    },
    format: (v) => v.map((d) => d.name).join(","),
  };
}

function parseDatabase(
  name: string,
  raw: unknown,
  overrides: {
    pool_size: SettingSpec<number>;
    min_pool_size: SettingSpec<number>;
    pool_mode: SettingSpec<PoolMode>;
    retry: SettingSpec<RetryMode>;
  },
): DatabaseSpec {
  if (name === "" || name.length > 63) {
    throw new InvalidValue("a database name of 1 to 63 characters");
  }
  if (name === ADMIN_DATABASE) {
    throw new InvalidValue(
      `a database name other than ${quote(ADMIN_DATABASE)} (the admin console)`,
    );
  }
  const entry = typeof raw === "string" ? { upstream: raw } : raw;
  if (!isMapping(entry)) {
    throw new InvalidValue("a URL or a mapping {upstream: URL, pool_size, ...}", { mask: "url" });
  }
  checkKeys(entry, DATABASE_KEYS);
  if (entry.upstream === undefined)
    throw new InvalidValue("an upstream URL", { path: ["upstream"], value: undefined });
  const spec: {
    name: string;
    url: UrlParts;
    pool_size?: number;
    min_pool_size?: number;
    pool_mode?: PoolMode;
    retry?: RetryMode;
  } = { name, url: at("upstream", entry.upstream, "url", parsePostgresUrl) };
  if (entry.pool_size !== undefined) {
    spec.pool_size = at("pool_size", entry.pool_size, "none", (v) => overrides.pool_size.parse(v));
  }
  if (entry.min_pool_size !== undefined) {
    spec.min_pool_size = at("min_pool_size", entry.min_pool_size, "none", (v) =>
      overrides.min_pool_size.parse(v),
    );
  }
  if (entry.pool_mode !== undefined) {
    spec.pool_mode = at("pool_mode", entry.pool_mode, "none", (v) => overrides.pool_mode.parse(v));
  }
  if (entry.retry !== undefined) {
    spec.retry = at("retry", entry.retry, "none", (v) => overrides.retry.parse(v));
  }
  return spec;
}

const USER_KEYS = ["name", "password", "password_file", "admin"] as const;
/** Reads a mounted secret; a trailing newline (echo > file) is not part of the password. */
function readSecretFile(raw: unknown): string {
  if (typeof raw !== "string" || raw === "") throw new InvalidValue("a file path");
  let content: string;
  try {
    content = readFileSync(raw, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new InvalidValue(`a readable file (${code})`);
  }
  content = content.replace(/\r?\n$/, "");
  if (content === "") throw new InvalidValue("a file holding a password (it is empty)");
  return content;
}

export function userList(o: {
  group: SettingGroup;
  doc: string;
}): SettingSpec<ReadonlyArray<UserConfig>> {
  return {
    group: o.group,
    type: "list of users",
    default: [],
    doc: o.doc,
    cli: "string",
    parse(raw) {
      const value = structured(raw);
      if (value === null || value === undefined) return [];
      if (!Array.isArray(value)) {
        throw new InvalidValue("a list of {name, password | password_file, admin}", {
          value,
          mask: "secret",
        });
      }
      const users: UserConfig[] = [];
      value.forEach((entry, i) => {
        const user = at(i, entry, "secret", parseUser);
        if (users.some((u) => u.name === user.name)) {
          throw new InvalidValue("each user name once", { path: [i, "name"], value: user.name });
        }
        users.push(user);
      });
      return users;
    },
    format: (v) => v.map((u) => u.name).join(","),
  };
}

function parseUser(raw: unknown): UserConfig {
  if (!isMapping(raw)) throw new InvalidValue("a mapping {name, password | password_file, admin}");
  checkKeys(raw, USER_KEYS);
  const name = at("name", raw.name, "none", (v) => {
    if (typeof v !== "string" || v === "") throw new InvalidValue("a user name (a string)");
    return v;
  });
  let password: string;
  if (raw.password !== undefined && raw.password_file !== undefined) {
    throw new InvalidValue("password or password_file, not both", {
      path: ["password_file"],
      value: raw.password_file,
    });
  } else if (raw.password !== undefined) {
    password = at("password", raw.password, "secret", (v) => {
      // YAML reads 0123 as the number 123: only a quoted string is taken as a password.
      if (typeof v !== "string" || v === "") throw new InvalidValue("a string (quote it in YAML)");
      return v;
    });
  } else if (raw.password_file !== undefined) {
    password = at("password_file", raw.password_file, "none", readSecretFile);
  } else {
    throw new InvalidValue("a password or a password_file", { path: ["password"] });
  }
  const admin = raw.admin === undefined ? false : at("admin", raw.admin, "none", parseBool);
  // readSecretFile took only a non-empty string: the path, kept to read the file again later.
  const file =
    raw.password_file === undefined ? {} : { password_file: raw.password_file as string };
  return { name, password, admin, ...file };
}
