/**
 * The browser bundle of `secagg/client`: one minified ES module with everything it imports
 * (@noble/*, @bufbuild/protobuf), for pages that load it from an npm CDN or copy it, and its type
 * declarations next to it. Run by `npm run build` (so `npm pack` ships it) after tsc:
 *
 *   dist/browser/secagg-client.min.js     ESM, platform browser ('#crypto-default' → crypto/web.js)
 *   dist/browser/secagg-client.min.d.ts   re-exports the declarations of dist/src/client
 *
 * Prints the raw, gzip and brotli sizes. Each file is written to a temporary name and renamed, so
 * a test that builds while another packs never reads half a file.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'browser');
const NAME = 'secagg-client.min';
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));

const result = await build({
  entryPoints: [join(ROOT, 'dist', 'src', 'client', 'index.js')],
  bundle: true,
  minify: true,
  platform: 'browser', // conditions browser/default/import: '#crypto-default' → crypto/web.js
  format: 'esm',
  target: 'es2022',
  legalComments: 'eof', // the @noble licence headers stay in the file
  banner: { js: `/*! ${pkg.name}/client ${pkg.version} | ${pkg.license} | ${pkg.homepage} */` },
  write: false,
  logLevel: 'warning',
  absWorkingDir: ROOT,
});
const js = result.outputFiles[0].contents;
const dts = `/** Types of ${NAME}.js: the same API as \`secagg/client\`. */\nexport * from '../src/client/index.js';\n`;

function writeAtomic(file, data) {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, file);
}

mkdirSync(OUT, { recursive: true });
writeAtomic(join(OUT, `${NAME}.js`), js);
writeAtomic(join(OUT, `${NAME}.d.ts`), dts);

const kB = (n) => `${(n / 1000).toFixed(1)} kB`;
const gzip = gzipSync(js, { level: 9 }).length;
const brotli = brotliCompressSync(js).length;
console.log(`dist/browser/${NAME}.js: ${kB(js.length)} raw, ${kB(gzip)} gzip -9, ${kB(brotli)} brotli`);
