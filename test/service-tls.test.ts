/**
 * TLS: a service started with a certificate serves HTTPS and wss://; clients that trust its CA (as
 * remote clients would) complete a round over wss://, a plain ws:// connection to it does not get
 * in, and a client that does not trust the certificate is refused at the TLS layer. The certificate
 * is made by Debian's openssl in a temporary directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { assertSum, nextResult, nodeClient, plaintextSum, selfSigned, startServer, token, trusting, vector } from './serviceHelpers.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

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
      const TrustingWebSocket = trusting(tls.cert);
      const m = 64;
      const result = nextResult(server);
      const clients = [0, 1, 2].map((i) => nodeClient(server, `tls-${i}`, vector(60 + i, m, 16), { WebSocket: TrustingWebSocket, rounds: 1 }));
      const r = await result;
      assert.equal(r.included.length, 3);
      assertSum(r, clients, m, 16);
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

test('secagg client --ca FILE takes part in a round over wss:// with a private CA; without --ca it fails fast with the TLS cause', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'secagg-tls-'));
  try {
    const tls = selfSigned(dir);
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, tls.cert);
    const m = 64;
    const cliInput = Array.from({ length: m }, (_, i) => (i * 7 + 3) % 65536);
    const inputFile = join(dir, 'input.json');
    writeFileSync(inputFile, JSON.stringify(cliInput));
    const server = await startServer({ tls, minClients: 3 });
    try {
      const run = (args: string[]) =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((ok) => {
          const p = spawn(process.execPath, [CLI, 'client', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          p.stdout.on('data', (d) => (stdout += d));
          p.stderr.on('data', (d) => (stderr += d));
          p.on('close', (code) => ok({ code, stdout, stderr }));
        });
      // Without --ca: the self-signed certificate is refused, once, with its cause.
      const refused = await run(['--url', server.url, '--token', token('cli-no-ca'), '--random', String(m), '--rounds', '1']);
      assert.equal(refused.code, 3, refused.stderr);
      assert.match(refused.stderr, /not retried/);
      assert.match(refused.stderr, /self[- ]signed|certificate/i);
      // With --ca: it joins two library clients that trust the CA, and the sum includes its input.
      const TrustingWebSocket = trusting(tls.cert);
      const result = nextResult(server);
      const cli = run(['--url', server.url, '--ca', caFile, '--token', token('cli-ca'), '--input', inputFile, '--rounds', '1']);
      const clients = [0, 1].map((i) => nodeClient(server, `lib-${i}`, vector(80 + i, m, 16), { WebSocket: TrustingWebSocket, rounds: 1 }));
      const r = await result;
      assert.equal(r.included.length, 3);
      assert.deepEqual(r.sum, plaintextSum([...clients.map((c) => c.input), Uint32Array.from(cliInput)], m, 16));
      const done = await cli;
      assert.equal(done.code, 0, done.stderr);
      assert.equal(JSON.parse(done.stdout.trim().split('\n').pop()!).included, true);
      await Promise.all(clients.map((c) => c.done));
    } finally {
      await server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
