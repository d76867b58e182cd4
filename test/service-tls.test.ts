/**
 * TLS: a service started with a certificate serves HTTPS and wss://; clients that trust its CA (as
 * remote clients would) complete a round over wss://, a plain ws:// connection to it does not get
 * in, and a client that does not trust the certificate is refused at the TLS layer. The certificate
 * is made by Debian's openssl in a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { WebSocketConstructor } from '../src/transport/socket.js';
import { nextResult, nodeClient, plaintextSum, startServer, vector } from './serviceHelpers.js';

function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

test('a TLS service: a round over wss:// with clients that trust its CA; plain ws:// and untrusting clients do not get in', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'secagg-tls-'));
  try {
    const tls = selfSigned(dir);
    const server = await startServer({ tls, minClients: 3 });
    try {
      assert.match(server.url, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
      assert.match(server.httpUrl, /^https:\/\//);
      // HTTPS answers /healthz under the CA.
      const health = await new Promise<number>((ok, fail) => {
        const req = request(`${server.httpUrl}healthz`, { ca: tls.cert }, (res) => {
          res.resume();
          ok(res.statusCode ?? 0);
        });
        req.on('error', fail);
        req.end();
      });
      assert.equal(health, 200);
      // A client trusts the service's CA, as a remote client given the CA file would.
      class TrustingWebSocket extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols, { ca: tls.cert });
        }
      }
      const m = 64;
      const result = nextResult(server);
      const clients = [0, 1, 2].map((i) =>
        nodeClient(server, `tls-${i}`, vector(60 + i, m, 16), { WebSocket: TrustingWebSocket as unknown as WebSocketConstructor, rounds: 1 }),
      );
      const r = await result;
      assert.equal(r.included.length, 3);
      assert.deepEqual(
        r.sum,
        plaintextSum(
          clients.map((c) => c.input),
          m,
          16,
        ),
      );
      await Promise.all(clients.map((c) => c.done));
      // Plain ws:// to the TLS port: the HTTP upgrade never happens.
      const plain = await new Promise<string>((ok) => {
        const ws = new WebSocket(server.url.replace('wss://', 'ws://'));
        ws.on('open', () => ok('open'));
        ws.on('error', (e) => ok(`error: ${(e as Error).message}`));
        ws.on('close', () => ok('closed'));
      });
      assert.notEqual(plain, 'open');
      // A client that does not trust the certificate: a TLS error, before any secagg frame.
      const untrusted = await new Promise<string>((ok) => {
        const ws = new WebSocket(server.url);
        ws.on('open', () => ok('open'));
        ws.on('error', (e) => ok((e as NodeJS.ErrnoException).code ?? (e as Error).message));
      });
      assert.match(untrusted, /SELF_SIGNED|CERT|UNABLE_TO_VERIFY/);
    } finally {
      await server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
