/**
 * Metrics and health of a cluster role (gateway, shard worker, coordinator): one prom-client
 * registry per process with the default process metrics, counters and gauges under
 * `secagg_cluster_*` labelled by role, and a small HTTP handler for /metrics and /healthz.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

export interface RoleMetrics {
  readonly register: Registry;
  inc(name: string, by?: number): void;
  gauge(name: string, read: () => number): void;
  /** The HTTP handler: /metrics (Prometheus text), /healthz (JSON from `health`). */
  handler(health: () => Record<string, unknown>): (req: IncomingMessage, res: ServerResponse) => void;
}

export function roleMetrics(role: string): RoleMetrics {
  const register = new Registry();
  register.setDefaultLabels({ role });
  collectDefaultMetrics({ register });
  const counters = new Map<string, Counter>();
  return {
    register,
    inc(name, by = 1) {
      let c = counters.get(name);
      if (!c) {
        c = new Counter({ name: `secagg_cluster_${snake(name)}_total`, help: `${role}: ${name}`, registers: [register] });
        counters.set(name, c);
      }
      c.inc(by);
    },
    gauge(name, read) {
      new Gauge({
        name: `secagg_cluster_${snake(name)}`,
        help: `${role}: ${name}`,
        registers: [register],
        collect() {
          this.set(read());
        },
      });
    },
    handler(health) {
      return (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/metrics') {
          void register.metrics().then(
            (text) => {
              res.writeHead(200, { 'content-type': register.contentType });
              res.end(text);
            },
            () => {
              res.writeHead(500);
              res.end();
            },
          );
        } else if (path === '/healthz') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true, ...health() }));
        } else {
          res.writeHead(404);
          res.end();
        }
      };
    },
  };
}

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
