/**
 * The service's HTTP side: /healthz on every listener, and the admin surface — the dashboard (/),
 * and its uPlot assets under /assets/, /metrics (Prometheus text, prom-client), /api/status and the round history (/api/rounds,
 * /api/rounds/:id — the sums) — on the listener that serves it (the client port or a listener of
 * its own: ServiceOptions.admin), behind the admin tokens when set (and the results tokens for the
 * history). GET only. It reads the service through the callbacks it is given and changes nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { RoundStore } from './store.js';
import { loadDashboard } from './dashboard.js';

export interface HttpOptions {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: RoundStore;
  /** This listener serves the admin surface (else only /healthz). */
  readonly admin: boolean;
  /** Bearer tokens the admin surface requires on /metrics and /api/*; empty: open. */
  readonly adminTokens: readonly string[];
  /** Bearer tokens that may read round results (besides the admin tokens); both empty: open. */
  readonly resultsTokens: readonly string[];
  /** The body of /api/status. */
  readonly status: () => Promise<unknown>;
  /** The fields of /healthz besides the status and memory. */
  readonly health: () => Record<string, unknown>;
  /** The server is shutting down: /healthz answers 503. */
  readonly closing: () => boolean;
  /** DP service: GET /dp (every listener, no token: it is public) answers the encoding clients use. */
  readonly dpEncoding?: unknown;
}

/** The request handler of the service's HTTP server. */
export function createHttpHandler(o: HttpOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { log, metrics, store } = o;
  const adminTokens = o.adminTokens.map(digest);
  const resultsTokens = [...adminTokens, ...o.resultsTokens.map(digest)];
  const dashboard = loadDashboard();

  /** No tokens: open; else the request's bearer token must be one of them (compared as SHA-256 digests, in constant time). */
  const authorized = (req: IncomingMessage, tokens: readonly Buffer[]): boolean => {
    if (tokens.length === 0) return true;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = digest(m[1]!);
    let ok = false;
    for (const t of tokens) ok = timingSafeEqual(t, got) || ok;
    return ok;
  };
  const unauthorized = (res: ServerResponse, what: string) => {
    res.setHeader('www-authenticate', 'Bearer realm="secagg admin"');
    return json(res, 401, { error: `${what} needs Authorization: Bearer <token>` });
  };

  const json = (res: ServerResponse, code: number, body: unknown) =>
    res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body));

  const onRequest = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      if (req.method !== 'GET') return json(res, 405, { error: 'method not allowed' });
      if (url.pathname === '/healthz') {
        const closing = o.closing();
        return json(res, closing ? 503 : 200, {
          status: closing ? 'closing' : 'ok',
          ...o.health(),
          memory: { rss: process.memoryUsage.rss(), maxRss: process.resourceUsage().maxRSS * 1024 },
        });
      }
      if (url.pathname === '/dp') {
        if (o.dpEncoding === undefined) return json(res, 404, { error: 'this server runs no DP rounds' });
        // Public, the same for every round: pages on other origins may read it.
        res.setHeader('access-control-allow-origin', '*');
        return json(res, 200, o.dpEncoding);
      }
      if (!o.admin) return json(res, 404, { error: 'not found' });
      // The page and its chart library are static (no data, no token needed); the page fetches the rest.
      if (url.pathname === '/' || url.pathname === '/index.html')
        return res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' }).end(dashboard.html);
      const asset = dashboard.assets.get(url.pathname);
      if (asset) return res.writeHead(200, { 'content-type': asset.contentType, 'cache-control': asset.cacheControl }).end(asset.body);
      const m = /^\/api\/rounds\/(\d+)$/.exec(url.pathname);
      if (m || url.pathname === '/api/rounds') {
        if (!authorized(req, resultsTokens)) return unauthorized(res, 'round results');
      } else if (!authorized(req, adminTokens)) return unauthorized(res, url.pathname);
      if (url.pathname === '/metrics') {
        const text = await metrics.register.metrics();
        return res.writeHead(200, { 'content-type': metrics.register.contentType, 'cache-control': 'no-store' }).end(text);
      }
      if (url.pathname === '/api/status') return json(res, 200, await o.status());
      if (m) {
        const r = await store.get(Number(m[1]));
        if (!r) return json(res, 404, { error: 'no such round' });
        return json(res, 200, { ...r, sum: r.sum ? Array.from(r.sum) : null });
      }
      if (url.pathname === '/api/rounds') {
        const limit = Number(url.searchParams.get('limit') ?? 100);
        if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) return json(res, 400, { error: 'limit must be an integer in [1, 10000]' });
        return json(res, 200, await store.list({ limit }));
      }
      return json(res, 404, { error: 'not found' });
    } catch (e) {
      log.log('error', 'http error', { path: url.pathname, error: String(e) });
      return json(res, 500, { error: 'internal error' });
    }
  };

  return (req, res) => void onRequest(req, res);
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
