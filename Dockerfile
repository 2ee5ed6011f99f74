# syntax=docker/dockerfile:1
# pgsidecar image: compiled with dev dependencies, run on distroless Node with production ones only.
#
#   docker build -t pgsidecar .
#   docker run --rm -p 6432:6432 -p 9930:9930 pgsidecar --upstream postgres://app:pw@db:5432/app
#
# No Docker engine runs on the project's CI machines: test/integration/docker-steps.test.ts runs
# the RUN steps of this file from a clean copy of the build context (what .dockerignore lets in),
# lays the runtime stage out as COPY says, and starts ENTRYPOINT + CMD and the HEALTHCHECK with
# this machine's Node. Keep RUN steps free of absolute paths so that they run the same there.

# The Node line of both stages. 26 is the Active LTS line since October 2026.
ARG NODE_MAJOR=26

# --- build: every dependency, then tsc ------------------------------------------------------
FROM node:${NODE_MAJOR}-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build
# Image defaults, read through PGSIDECAR_CONFIG: listen on every interface of the container (the
# pod or container network is the boundary; clients still authenticate). A mounted file at the
# same path replaces it, as the Helm chart's ConfigMap does; env vars and flags override it.
RUN printf '%s\n' '# pgsidecar image defaults (see config/pgsidecar.yaml for every setting)' \
      'listen: "0.0.0.0:6432"' 'http_listen: "0.0.0.0:9930"' > image-defaults.yaml

# --- production dependencies only (no compiler, no test tools) -------------------------------
FROM node:${NODE_MAJOR}-trixie-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: distroless (no shell, no package manager), uid 65532 ---------------------------
FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian13:nonroot AS runtime
WORKDIR /app
ENV NODE_ENV=production \
    PGSIDECAR_CONFIG=/etc/pgsidecar/pgsidecar.yaml
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# dist/config/load.js reads the version from ../../package.json.
COPY package.json ./
COPY --from=build /app/image-defaults.yaml /etc/pgsidecar/pgsidecar.yaml
USER 65532:65532
# 6432: Postgres clients. 9930: /metrics, /healthz, /readyz, /status.
EXPOSE 6432 9930
# No curl in a distroless image: Node's fetch asks /healthz. PGSIDECAR_HEALTHCHECK_URL overrides
# the address when http_listen is moved.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/nodejs/bin/node", "-e", "fetch(process.env.PGSIDECAR_HEALTHCHECK_URL||'http://127.0.0.1:9930/healthz',{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Node is PID 1 and handles SIGTERM (drain), SIGINT (stop now) and SIGHUP (reload) itself; it
# starts no child processes, so there is nothing for an init to reap (`docker run --init` works too).
STOPSIGNAL SIGTERM
# Arguments given to `docker run` (or a pod's args) go to the CLI: --upstream ..., check-config.
ENTRYPOINT ["/nodejs/bin/node", "dist/cli.js"]
CMD []
