// Build: type-checked sources (tsc --noEmit runs first, see package.json) bundled with esbuild into
// dist/, plus the runtimes' own .wasm/.mjs files copied next to it: the aggregator serves all of
// it at /run, nothing is fetched from a CDN.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const pkg = (p) => JSON.parse(readFileSync(p, 'utf8'));
const app = pkg('package.json');
const ortDir = 'node_modules/onnxruntime-web/dist';
rmSync('dist', { recursive: true, force: true });
mkdirSync('dist/ort', { recursive: true });
await build({
  entryPoints: ['src/main.ts'],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  outfile: 'dist/app.js',
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
  define: {
    __APP_VERSION__: JSON.stringify(app.version),
    __ORT_VERSION__: JSON.stringify(pkg('node_modules/onnxruntime-web/package.json').version),
    __LITERT_VERSION__: JSON.stringify(pkg('node_modules/@litertjs/core/package.json').version),
  },
});
for (const f of readdirSync(ortDir)) if (f.startsWith('ort-wasm-simd-threaded.')) cpSync(`${ortDir}/${f}`, `dist/ort/${f}`);
cpSync('node_modules/@litertjs/core/wasm', 'dist/litert', { recursive: true });
cpSync('index.html', 'dist/index.html');
cpSync('app.css', 'dist/app.css');
writeFileSync('dist/BUILD_INFO.json', JSON.stringify({ version: app.version, built_at: new Date().toISOString() }) + '\n');
console.log('web_app/dist built');
