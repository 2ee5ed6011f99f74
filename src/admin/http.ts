// HTTP side of the admin surface: /metrics (Prometheus), /healthz, /readyz and /status (JSON).

import http from "node:http";
import type { Metrics } from "../metrics.js";

export interface HttpHandlers {
  metrics: Metrics;
  /** Listening and not draining (and, when configured, the upstream reachable). */
  ready(): boolean;
  status(): unknown;
}

export class AdminHttpServer {
  private server: http.Server | null = null;
  port = 0;

  constructor(private readonly handlers: HttpHandlers) {}

  async start(host: string, port: number): Promise<void> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: Error) => {
        res.statusCode = 500;
        res.end(`${err.message}\n`);
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) =>
        reject(
          new Error(
            `cannot listen on ${host}:${port} (http_listen): ${err.code === "EADDRINUSE" ? "address already in use" : err.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? "/").split("?")[0];
    switch (url) {
      case "/metrics": {
        const body = await this.handlers.metrics.registry.metrics();
        res.setHeader("Content-Type", this.handlers.metrics.registry.contentType);
        res.end(body);
        return;
      }
      case "/healthz":
        res.end("ok\n");
        return;
      case "/readyz": {
        const ok = this.handlers.ready();
        res.statusCode = ok ? 200 : 503;
        res.end(ok ? "ready\n" : "not ready\n");
        return;
      }
      case "/status":
        res.setHeader("Content-Type", "application/json");
        res.end(`${JSON.stringify(this.handlers.status(), null, 2)}\n`);
        return;
      default:
        res.statusCode = 404;
        res.end("not found\n");
    }
  }
}
