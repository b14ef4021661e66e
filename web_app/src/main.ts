// The /run page: environment checks, pairing, choice of models / runtimes / precisions, the run
// with a progress bar per artifact, live results, the offline queue, and a link to the dashboard.
// URL parameters (all optional, used by `freenet bench --runtimes web` and the tests): pair, bundle,
// models, runs (e.g. "onnxruntime-web:webgpu,litert-js:wasm"), precisions, warmup, rounds,
// runs_per_round, cooldown, autostart=1.
import * as api from './api';
import { OrtAdapter } from './adapters/ort';
import { LiteRtAdapter } from './adapters/litert';
import type { Accelerator, RuntimeAdapter } from './adapters/types';
import { deviceFacts, probeGpu, type GpuInfo } from './device';
import { planJobs, runPlan, type Job, type Plan, type TraceEntry } from './protocol';
import * as queue from './queue';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const DEFAULT_MODELS = ['freenet_s2', 'starnet_s4', 'mobilenet_v2'];
const adapters: RuntimeAdapter[] = [new OrtAdapter('/run/ort/'), new LiteRtAdapter('/run/litert/')];

interface PageState {
  state: 'loading' | 'ready' | 'running' | 'done' | 'failed';
  reports: Record<string, unknown>[];
  trace: TraceEntry[];
  queued: number;
  messages: string[];
  gpu: { label: string | null; software: boolean; error: string | null } | null;
}
const page: PageState = { state: 'loading', reports: [], trace: [], queued: 0, messages: [], gpu: null };
(window as unknown as { __freenet: PageState }).__freenet = page;

function setState(s: PageState['state']): void { page.state = s; document.body.dataset.state = s; }
function log(msg: string): void { page.messages.push(msg); $('log').textContent += `${new Date().toLocaleTimeString()} ${msg}\n`; }
function el(tag: string, attrs: Record<string, string> = {}, text = ''): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}
function note(where: HTMLElement, cls: string, text: string): HTMLElement {
  const p = el('p', { class: cls }, text);
  where.append(p);
  return p;
}

function environment(gpu: GpuInfo): void {
  const env = $('env');
  if (!window.isSecureContext) {
    note(env, 'bad', `This page is not a secure context (${location.protocol}//${location.host}), so the browser hides WebGPU. ` +
      'To measure the GPU: on Android connect USB and run `adb reverse tcp:8787 tcp:8787` on the computer, then open ' +
      'http://localhost:8787/run on the phone; or start the server with HTTPS (`freenet serve --tls-cert CERT --tls-key KEY`, ' +
      'or `freenet serve --self-signed-tls` and install its lab CA on the phone, see web_app/README.md) and open the https:// URL. ' +
      'The wasm (CPU) runs below still work here.');
  } else if (!gpu.adapter) {
    note(env, 'warn', `WebGPU is not available in this browser (${gpu.error}). Use Chrome 121+ on Android 12+, or Safari on iOS 26+; ` +
      'on desktop Chrome check chrome://gpu. The wasm (CPU) runs still work.');
  } else {
    note(env, gpu.software ? 'warn' : 'good', `WebGPU adapter: ${gpu.label}` +
      (gpu.software ? ' — a software (emulated) GPU: its numbers prove the path runs, they are never a speed result.' : ''));
  }
  if (!('wakeLock' in navigator)) note(env, 'muted', 'No Screen Wake Lock API: keep the screen on yourself during the run.');
}

async function pairing(): Promise<void> {
  const box = $('pairing');
  box.replaceChildren();
  const code = params.get('pair');
  if (code) {
    params.delete('pair');
    history.replaceState(null, '', `${location.pathname}${params.toString() ? `?${params}` : ''}`);
    try {
      const name = await api.pair(code, defaultDeviceName());
      note(box, 'good', `Paired: this browser now reports as device "${name}".`);
      log(`paired as ${name}`);
    } catch (e) {
      note(box, 'bad', `Pairing refused: ${e instanceof Error ? e.message : String(e)}. Ask for a fresh QR code (\`freenet pair\`, or the dashboard's "Pair a phone" on the server).`);
      log(`pairing refused: ${String(e)}`);
    }
  }
  const dev = api.storedDevice();
  if (api.storedToken()) {
    const p = note(box, 'muted', `Device: ${dev}. `);
    const forget = el('button', { type: 'button' }, 'Forget this device token');
    forget.onclick = () => { api.forgetToken(); void pairing(); };
    p.append(forget);
  } else if (!code) {
    const p = note(box, 'warn', 'Not paired: results are kept in this browser until it is paired. Scan the QR code that `freenet serve` prints, or enter a pairing code: ');
    const input = el('input', { id: 'pair-code', size: '12', placeholder: 'code' }) as HTMLInputElement;
    const go = el('button', { type: 'button' }, 'Pair');
    go.onclick = () => { params.set('pair', input.value.trim()); void pairing().then(refreshQueue); };
    p.append(input, go);
  }
}

function defaultDeviceName(): string {
  const ua = navigator.userAgent;
  const m = /Android [\d.]+; ([^;)]+)/.exec(ua);
  return `web ${m ? m[1].trim() : /iPhone|iPad/.test(ua) ? 'iOS device' : 'browser'} ${Math.random().toString(36).slice(2, 6)}`;
}

async function refreshQueue(): Promise<void> {
  const items = await queue.queued();
  const rej = await queue.rejected();
  page.queued = items.length;
  $('queue-status').textContent = items.length
    ? `${items.length} report(s) waiting to be sent` + (rej.length ? `; ${rej.length} refused by the server (kept aside)` : '')
    : `nothing queued` + (rej.length ? `; ${rej.length} refused by the server (kept aside)` : '');
  $('queue-list').replaceChildren(...items.map((r) => {
    const m = r.model as { name: string; precision: string };
    const rt = r.runtime as { name: string; accelerator: string };
    return el('li', {}, `${m.name} ${m.precision} ${rt.name}/${rt.accelerator} — ${r.status} (${r.run_id})`);
  }));
}

let flushing = false;
let retryMs = 2000;
async function flushQueue(): Promise<void> {
  if (flushing) return;
  flushing = true;
  try {
    const res = await queue.flush(api.storedToken());
    if (res.sent) log(`sent ${res.sent} report(s)`);
    if (res.rejected) log(`${res.rejected} report(s) refused by the server (422), kept aside`);
    if (res.error) log(res.error);
    retryMs = res.left && !res.error?.startsWith('not paired') ? Math.min(retryMs * 2, 60000) : 2000;
    if (res.left) setTimeout(() => void flushQueue(), retryMs);
  } finally {
    flushing = false;
    await refreshQueue();
  }
}

async function main(): Promise<void> {
  const gpu = await probeGpu();
  page.gpu = { label: gpu.label, software: gpu.software, error: gpu.error };
  environment(gpu);
  await pairing();
  await refreshQueue();
  void flushQueue();
  window.addEventListener('online', () => void flushQueue());
  $('flush').onclick = () => { retryMs = 2000; void flushQueue(); };

  let names: string[] = [];
  try { names = await api.bundles(); } catch (e) { note($('env'), 'bad', `Cannot list bundles: ${String(e)}`); }
  if (!names.length) { note($('env'), 'bad', 'This server serves no model bundles: start it with `freenet serve --bundles DIR`.'); setState('failed'); return; }
  const sel = $('bundle') as HTMLSelectElement;
  sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
  sel.value = params.get('bundle') && names.includes(params.get('bundle')!) ? params.get('bundle')! : names[names.length - 1];
  sel.onchange = () => void fillForm(sel.value);
  await fillForm(sel.value);
  for (const [id, key] of [['warmup', 'warmup'], ['rounds', 'rounds'], ['runs', 'runs_per_round'], ['cooldown', 'cooldown']]) {
    if (params.get(key) !== null) ($(id) as HTMLInputElement).value = params.get(key)!;
  }
  $('form').onsubmit = (ev) => { ev.preventDefault(); void start(gpu); };
  setState('ready');
  if (params.get('autostart') === '1') await start(gpu);
}

function checkboxes(box: HTMLElement, name: string, values: string[], checked: (v: string) => boolean, label = (v: string) => v): void {
  box.querySelectorAll('label').forEach((l) => l.remove());
  for (const v of values) {
    const l = el('label');
    const i = el('input', { type: 'checkbox', name, value: v }) as HTMLInputElement;
    i.checked = checked(v);
    l.append(i, ` ${label(v)}`);
    box.append(l);
  }
}

const chosen = (name: string) => Array.from(document.querySelectorAll<HTMLInputElement>(`input[name=${name}]:checked`), (i) => i.value);
const listParam = (k: string) => params.get(k)?.split(',').map((s) => s.trim()).filter(Boolean) ?? null;

async function fillForm(bundle: string): Promise<void> {
  const m = await api.manifest(bundle);
  const models = [...new Set(m.artifacts.filter((a) => a.status === 'ok').map((a) => a.model))].sort();
  const wantModels = listParam('models') ?? (models.some((x) => DEFAULT_MODELS.includes(x)) ? DEFAULT_MODELS : models);
  checkboxes($('models'), 'model', models, (v) => wantModels.includes(v));
  const precs = [...new Set(m.artifacts.map((a) => a.precision))].sort();
  const wantPrec = listParam('precisions') ?? ['fp16', 'fp32'];
  checkboxes($('precisions'), 'precision', precs, (v) => wantPrec.includes(v));
  const runs: string[] = [];
  for (const a of adapters) for (const acc of ['webgpu', 'wasm', 'webnn'] as Accelerator[]) runs.push(`${a.name}:${acc}`);
  const avail = (r: string) => { const [n, acc] = r.split(':'); return adapters.find((a) => a.name === n)!.available().includes(acc as Accelerator); };
  const wantRuns = listParam('runs');
  checkboxes($('runtimes'), 'run', runs, (r) => (wantRuns ? wantRuns.includes(r) : avail(r)),
    (r) => `${r.replace(':', ' / ')}${avail(r) ? '' : ' (not offered by this browser)'}`);
}

async function start(gpu: GpuInfo): Promise<void> {
  if (page.state === 'running') return;
  setState('running');
  ($('start') as HTMLButtonElement).disabled = true;
  const num = (id: string) => Math.max(0, Math.floor(Number(($(id) as HTMLInputElement).value)));
  const plan: Plan = {
    bundle: ($('bundle') as HTMLSelectElement).value,
    models: chosen('model'),
    precisions: chosen('precision'),
    runs: chosen('run').map((r) => { const [n, acc] = r.split(':'); return { runtime: adapters.find((a) => a.name === n)!, accelerator: acc as Accelerator }; }),
    warmup: num('warmup'), rounds: Math.max(1, num('rounds')), runsPerRound: Math.max(1, num('runs')), cooldownMs: num('cooldown'),
  };
  let wake: WakeLockSentinel | null = null;
  let hiddenAt: string | null = null;
  const onVis = () => { if (document.hidden && !hiddenAt) { hiddenAt = new Date().toISOString(); log('page went to the background: run aborted'); } };
  document.addEventListener('visibilitychange', onVis);
  try {
    try { wake = await navigator.wakeLock?.request('screen'); } catch (e) { log(`no screen wake lock: ${String(e)}`); }
    const manifest = await api.manifest(plan.bundle);
    const jobs = planJobs(manifest, plan);
    if (!jobs.length) throw new Error('nothing to run: no artifact of the bundle matches the chosen models, runtimes and precisions');
    const bars = new Map<Job, { bar: HTMLProgressElement; phase: HTMLElement; row: HTMLTableRowElement }>();
    $('progress').replaceChildren(el('h2', {}, 'Progress'));
    for (const j of jobs) {
      const line = el('div', { class: 'job' });
      const bar = el('progress', { max: '1', value: '0' }) as HTMLProgressElement;
      const phase = el('span', {}, j.phase);
      line.append(el('span', {}, `${j.artifact.model} ${j.artifact.precision} · ${j.runtime.name}/${j.accelerator}`), bar, phase);
      $('progress').append(line);
      const row = el('tr') as HTMLTableRowElement;
      ($('results') as HTMLTableElement).tBodies[0].append(row);
      bars.set(j, { bar, phase, row });
    }
    const facts = await deviceFacts(gpu);
    log(`device: ${JSON.stringify(facts.device)}; browser ${facts.browser}`);
    // the dashboard's device filter uses the server's label: "<manufacturer> <model>", or the model alone when it starts with it
    const man = String(facts.device.manufacturer), mod = String(facts.device.model);
    ($('dash') as HTMLAnchorElement).href = `/?device=${encodeURIComponent(mod.toLowerCase().startsWith(man.toLowerCase()) ? mod : `${man} ${mod}`)}`;
    await runPlan(plan, jobs, {
      trace: page.trace,
      log,
      aborted: () => (hiddenAt ? `aborted: the page went to the background at ${hiddenAt}; browsers throttle hidden tabs, so its samples are invalid. Keep the page in front and the screen on.` : null),
      update(job) {
        const b = bars.get(job)!;
        b.bar.value = job.progress;
        b.phase.textContent = job.error && job.phase !== 'error' ? `${job.phase}: ${job.error}` : job.error ?? job.phase;
        renderRow(b.row, job);
      },
      async report(job, report) {
        page.reports.push(report);
        await queue.enqueue(report);
        renderRow(bars.get(job)!.row, job);
        await flushQueue();
      },
    }, gpu, facts);
    log('run finished');
  } catch (e) {
    note($('env'), 'bad', `Run failed: ${e instanceof Error ? e.message : String(e)}`);
    log(`run failed: ${String(e)}`);
  } finally {
    document.removeEventListener('visibilitychange', onVis);
    await wake?.release().catch(() => undefined);
    ($('start') as HTMLButtonElement).disabled = false;
    await refreshQueue();
    setState('done');
  }
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function renderRow(row: HTMLTableRowElement, job: Job): void {
  const r = job.report as undefined | { runtime: { accelerator_used: string | null; emulated: boolean }; placement: Record<string, number> | null; status: string; run_id: string };
  const used = r?.runtime.accelerator_used;
  const med = median(job.samples);
  const p = job.parity;
  row.className = `${job.error ? 'error' : ''} ${r?.runtime.emulated ? 'emulated' : ''}`;
  const cells = [
    job.artifact.model, job.artifact.precision,
    `${job.runtime.name}/${job.accelerator}${used ? ` → ran on ${used}` : ''}`,
    r ? r.status : job.phase,
    med === null ? '—' : med.toFixed(2), String(job.samples.length),
    job.loadMs === null ? '—' : job.loadMs.toFixed(0),
    p ? `${p.rel_diff?.toExponential(1)} / ${p.tolerance ?? 'none'} ${p.passed === null ? '' : p.passed ? '✓' : '✗'}` : job.error ?? '—',
    r?.placement ? Object.entries(r.placement).map(([k, v]) => `${k}:${v}`).join(' ') : '—',
  ];
  row.replaceChildren(...cells.map((c) => el('td', {}, c)));
  if (r) {
    const a = el('a', { href: `/reports/${r.run_id}` }, ' report');
    row.cells[3].append(a);
  }
}

void main().catch((e) => { note($('env'), 'bad', `The page failed to start: ${String(e)}`); setState('failed'); });
