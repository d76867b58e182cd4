/**
 * The other process of the resume test (test/state.test.ts): reads a round written down by another
 * process — every state encoded, the messages in flight — builds its own contexts, finishes the
 * round and prints the result as JSON. Runs only when SECAGG_RESUME_CHILD is set (node's test
 * runner loads every file under dist/test, and this one must register no tests).
 */
import { readFileSync } from 'node:fs';
import { contextsFor, fromJson, readBack, runToEnd } from './resumeLoop.js';

interface Job {
  /** One round written down (toJson), or several: each is finished on its own. */
  readonly round?: string;
  readonly rounds?: string[];
  readonly ids: number[];
  readonly seed: number;
  readonly directory?: [number, string][];
  readonly identities?: [number, string][];
}

if (process.env['SECAGG_RESUME_CHILD'] === '1') {
  const job = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Job;
  const hexMap = (xs?: [number, string][]) => (xs ? new Map(xs.map(([id, h]) => [id, new Uint8Array(Buffer.from(h, 'hex'))])) : undefined);
  const finish = async (text: string, i: number) => {
    const round = readBack(fromJson(text));
    const events = await runToEnd(round, contextsFor(job.ids, job.seed + i, hexMap(job.directory), hexMap(job.identities)));
    const s = round.server;
    return {
      pid: process.pid,
      events,
      stage: s.stage,
      sum: s.stage === 'done' ? [...s.result.sum] : null,
      included: s.stage === 'done' ? [...s.result.included] : null,
      abort: s.stage === 'aborted' ? s.abortError.code : null,
    };
  };
  if (job.rounds) {
    const out = [];
    for (const [i, r] of job.rounds.entries()) out.push(await finish(r, i));
    process.stdout.write(JSON.stringify(out));
  } else process.stdout.write(JSON.stringify(await finish(job.round!, 0)));
}
