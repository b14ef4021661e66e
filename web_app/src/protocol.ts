// The measurement protocol of the native apps (docs/protocol.md, android_app/README.md), in the
// browser: manifest -> pick artifacts -> download and verify sha256 -> per artifact load, first
// inference, warm-up -> timed rounds interleaved across models (shuffled per round, a cool-down
// pause before each model's turn) -> parity against the bundle's reference -> one report each.
import type { Artifact, Manifest } from './api';
import { verifiedFile } from './api';
import type { Accelerator, LoadedModel, RuntimeAdapter } from './adapters/types';
import type { DeviceFacts, GpuInfo } from './device';
import { judgeParity, type Parity } from './parity';
import { uuid4 } from './sha256';
import type { Report } from './queue';

declare const __APP_VERSION__: string;

export interface Plan {
  bundle: string;
  models: string[];
  runs: { runtime: RuntimeAdapter; accelerator: Accelerator }[];
  precisions: string[];
  warmup: number;
  rounds: number;
  runsPerRound: number;
  cooldownMs: number;
}

export interface TraceEntry { job: string; t0: number; tDispatched: number; t1: number; sample: number }

export interface Job {
  key: string;
  runtime: RuntimeAdapter;
  accelerator: Accelerator;
  artifact: Artifact;
  phase: string;
  progress: number; // 0..1
  files?: { model: Uint8Array; input: Float32Array; reference: Float32Array };
  model?: LoadedModel;
  loadMs: number | null;
  firstMs: number | null;
  samples: number[];
  parity: Parity | null;
  error: string | null;
  startedAt: string;
  report?: Report;
}

export interface Hooks {
  update(job: Job): void;
  log(msg: string): void;
  report(job: Job, report: Report): Promise<void>;
  trace: TraceEntry[];
  aborted(): string | null; // a reason when the run must stop (page hidden)
}

const PREFERRED_TARGET: Record<string, string[]> = {
  'onnxruntime-web': ['onnxruntime-nnapi', 'onnxruntime-cpu'],
  'litert-js': ['litert-gpu', 'litert-cpu'],
};

/** One artifact per runtime x model x precision, as the host runner picks them. */
export function planJobs(m: Manifest, plan: Plan): Job[] {
  const jobs: Job[] = [];
  for (const { runtime, accelerator } of plan.runs) {
    const prefs = PREFERRED_TARGET[runtime.name];
    const pick = new Map<string, Artifact>();
    for (const a of m.artifacts) {
      if (a.status !== 'ok' || a.format !== runtime.format || !a.file || !a.sha256 || !a.reference) continue;
      if (!plan.models.includes(a.model) || !plan.precisions.includes(a.precision)) continue;
      const k = `${a.model}/${a.precision}`;
      const prev = pick.get(k);
      const rank = (x: Artifact) => { const i = prefs.indexOf(x.target); return i < 0 ? 99 : i; };
      if (!prev || rank(a) < rank(prev)) pick.set(k, a);
    }
    for (const a of pick.values()) {
      jobs.push({ key: `${runtime.name}/${accelerator}/${a.id}`, runtime, accelerator, artifact: a, phase: 'queued', progress: 0,
        loadMs: null, firstMs: null, samples: [], parity: null, error: null, startedAt: new Date().toISOString() });
    }
  }
  return jobs;
}

function toF32(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** The reference input is stored NCHW; NHWC artifacts get it transposed, as the host runner does. */
function layoutInput(x: Float32Array, spec: Artifact['inputs'][0]): Float32Array {
  if (spec.layout !== 'NHWC') return x;
  const [n, h, w, c] = spec.shape;
  const out = new Float32Array(x.length);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < c; ch++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) {
    out[((b * h + y) * w + xx) * c + ch] = x[((b * c + ch) * h + y) * w + xx];
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function shuffle<T>(xs: T[]): T[] {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

export async function runPlan(plan: Plan, jobs: Job[], hooks: Hooks, gpu: GpuInfo, facts: DeviceFacts): Promise<void> {
  const check = () => { const why = hooks.aborted(); if (why) throw new Error(why); };
  // 1. download and verify every file before anything is measured
  const cache = new Map<string, Promise<Uint8Array>>();
  const get = (path: string, sha: string, job?: Job) => {
    if (!cache.has(path)) cache.set(path, verifiedFile(plan.bundle, path, sha, job ? (f) => { job.progress = 0.2 * f; hooks.update(job); } : undefined));
    return cache.get(path)!;
  };
  for (const job of jobs) {
    const a = job.artifact;
    job.phase = 'downloading';
    hooks.update(job);
    try {
      const [model, input, reference] = await Promise.all([
        get(a.file!, a.sha256!, job), get(a.reference!.input_file, a.reference!.input_sha256), get(a.reference!.output_file, a.reference!.output_sha256),
      ]);
      job.files = { model, input: layoutInput(toF32(input), a.inputs[0]), reference: toF32(reference) };
      job.phase = 'verified';
      job.progress = 0.2;
    } catch (e) {
      job.error = String(e instanceof Error ? e.message : e);
      job.phase = 'refused';
      job.progress = 1;
    }
    hooks.update(job);
  }
  // 2. per runtime x accelerator: load all, then interleaved rounds
  const groups = new Map<string, Job[]>();
  for (const j of jobs) {
    const k = `${j.runtime.name}/${j.accelerator}`;
    groups.set(k, [...(groups.get(k) ?? []), j]);
  }
  const steps = plan.rounds;
  for (const [name, group] of groups) {
    hooks.log(`${name}: loading ${group.length} model(s)`);
    try {
      for (const job of group.filter((j) => !j.error)) {
        check();
        job.startedAt = new Date().toISOString();
        job.phase = 'loading';
        hooks.update(job);
        try {
          const t0 = performance.now();
          job.model = await job.runtime.load(job.files!.model, job.accelerator, job.artifact.inputs[0].shape);
          job.loadMs = performance.now() - t0;
          const first = await job.model.run(job.files!.input);
          job.firstMs = first.t1 - first.t0;
          job.phase = 'warm-up';
          hooks.update(job);
          for (let i = 0; i < plan.warmup; i++) await job.model.run(job.files!.input);
          job.progress = 0.3;
        } catch (e) {
          job.error = `${job.phase} failed: ${e instanceof Error ? e.message : String(e)}`;
          job.phase = 'error';
          job.progress = 1;
        }
        hooks.update(job);
      }
      for (let r = 0; r < steps; r++) {
        for (const job of shuffle(group.filter((j) => j.model && !j.error))) {
          check();
          job.phase = `round ${r + 1}/${steps}`;
          hooks.update(job);
          if (plan.cooldownMs > 0) await sleep(plan.cooldownMs);
          try {
            for (let i = 0; i < plan.runsPerRound; i++) {
              const res = await job.model!.run(job.files!.input);
              const sample = res.t1 - res.t0; // dispatch + GPU completion + readback
              job.samples.push(sample);
              hooks.trace.push({ job: job.key, t0: res.t0, tDispatched: res.tDispatched, t1: res.t1, sample });
            }
          } catch (e) {
            job.error = `inference failed in round ${r + 1}: ${e instanceof Error ? e.message : String(e)}`;
          }
          job.progress = 0.3 + 0.65 * ((r + 1) / steps);
          hooks.update(job);
        }
      }
      check();
      for (const job of group) {
        if (job.model && !job.error) {
          try {
            const used = job.model.describe().acceleratorUsed ?? job.accelerator;
            const res = await job.model.run(job.files!.input);
            job.parity = judgeParity(res.output, job.files!.reference, job.artifact.precision, used);
          } catch (e) {
            job.error = `parity run failed: ${e instanceof Error ? e.message : String(e)}`;
          }
        }
      }
    } catch (e) {
      // aborted (page hidden): samples taken while throttled are invalid, none is reported as a result
      const why = e instanceof Error ? e.message : String(e);
      for (const job of group) {
        if (!job.report) { job.error = why; job.samples = []; job.parity = null; }
      }
    }
    for (const job of group) {
      job.progress = 1;
      job.phase = job.error ? 'error' : job.parity?.passed === false ? 'parity failed' : 'done';
      const report = buildReport(plan, job, gpu, facts);
      job.report = report;
      job.model?.dispose();
      job.model = undefined;
      hooks.update(job);
      await hooks.report(job, report);
    }
  }
}

export function buildReport(plan: Plan, job: Job, gpu: GpuInfo, facts: DeviceFacts): Report {
  const a = job.artifact;
  const desc = job.model?.describe() ?? {
    name: job.runtime.name, version: job.runtime.version, accelerator: job.accelerator, acceleratorUsed: null,
    delegate: null, threads: null, placement: null, notes: {},
  };
  const ok = !job.error && job.samples.length > 0;
  const status = !ok ? 'error' : job.parity?.passed === false ? 'parity_failed' : 'ok';
  const now = new Date().toISOString();
  const error = status === 'error' ? (job.error ?? 'no samples were measured')
    : status === 'parity_failed' ? `output differs from the bundle's reference by ${job.parity!.rel_diff!.toExponential(2)} (relative), above the tolerance ${job.parity!.tolerance}`
      : null;
  const notes: Record<string, string> = {
    ...facts.notes, ...desc.notes, target: a.target, rounds: String(plan.rounds), runs_per_round: String(plan.runsPerRound),
    timing: 'each sample: performance.now() before run() to after the output is readable on the CPU (GPU done and read back)',
  };
  if (job.accelerator === 'webgpu' && gpu.software) notes.emulated_reason = `software WebGPU adapter (${gpu.label})`;
  return {
    schema_version: '1',
    run_id: uuid4(),
    created_at: now,
    started_at: job.startedAt,
    finished_at: now,
    client: { app: 'freenet-web-runner', platform: 'web', app_version: __APP_VERSION__, browser: facts.browser, user_agent: facts.userAgent },
    device: facts.device,
    runtime: {
      name: desc.name, version: desc.version, accelerator: job.accelerator, delegate: desc.delegate,
      accelerator_used: desc.acceleratorUsed, threads: desc.threads,
      // a software adapter (SwiftShader, fallback adapter) is never a GPU speed result
      emulated: job.accelerator === 'webgpu' && gpu.software,
    },
    model: {
      name: a.model, family: /^[a-z0-9][a-z0-9_.+-]{0,63}$/.test(a.model_family) ? a.model_family : null, artifact_id: a.id,
      format: a.format, precision: a.precision, sha256: a.sha256, input_shape: a.inputs[0].shape, bundle: plan.bundle,
      macs: a.macs, params: a.params,
    },
    timing: {
      load_ms: ok && job.loadMs && job.loadMs > 0 ? job.loadMs : null,
      first_inference_ms: ok && job.firstMs && job.firstMs > 0 ? job.firstMs : null,
      warmup_runs: plan.warmup, samples_ms: ok ? job.samples : [], cooldown_ms: plan.cooldownMs,
    },
    placement: desc.placement,
    thermal: { before: 'unknown', after: 'unknown' },
    parity: job.parity ?? { max_abs_diff: null, reference_checked: false },
    battery: facts.battery,
    status,
    error,
    notes: Object.fromEntries(Object.entries(notes).slice(0, 32).map(([k, v]) => [k.slice(0, 64), v.slice(0, 2000)])),
  };
}
