// onnxruntime-web adapter: the bundle's .onnx files on the `webgpu` or `wasm` execution provider.
// session.run() returns CPU tensors (preferredOutputLocation 'cpu'), i.e. the WebGPU work is done
// and read back when it resolves; the sample still stops only after the output data is in hand.
import * as ort from 'onnxruntime-web';
import type { Accelerator, LoadedModel, RunResult, RuntimeAdapter } from './types';

declare const __ORT_VERSION__: string;

const EP_UNIT: Record<string, string> = {
  JsExecutionProvider: 'webgpu',
  WebGpuExecutionProvider: 'webgpu',
  CPUExecutionProvider: 'wasm',
  WebNNExecutionProvider: 'webnn',
};

/** Node counts per execution provider from ORT's "Node placements" log lines. */
export function parsePlacement(lines: string[]): Record<string, number> | null {
  const out: Record<string, number> = {};
  for (const line of lines) {
    const m = /(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (m) {
      const unit = EP_UNIT[m[1]] ?? m[1].toLowerCase().replace(/executionprovider$/, '');
      out[unit] = (out[unit] ?? 0) + Number(m[2]);
    }
  }
  return Object.keys(out).length ? out : null;
}

// ORT's wasm module binds console.log/console.error once, when it starts: tap them before that, for
// good, and keep only its "Node placements" lines (read by load() right after session creation).
const ORT_LOG: string[] = [];
function tapConsole(): void {
  for (const k of ['log', 'info', 'warn', 'error'] as const) {
    const orig = console[k].bind(console);
    console[k] = (...a: unknown[]) => {
      const text = a.map(String).join(' ');
      if (text.includes('placed on [')) ORT_LOG.push(text);
      orig(...a);
    };
  }
}

export class OrtAdapter implements RuntimeAdapter {
  readonly name = 'onnxruntime-web' as const;
  readonly format = 'onnx' as const;
  readonly version = __ORT_VERSION__;

  constructor(assetBase: string) {
    ort.env.wasm.wasmPaths = assetBase; // every ort-wasm-simd-threaded.* file is served there
    ort.env.wasm.numThreads = 1; // one thread: the page is not cross-origin isolated, and runs compare alike
    ort.env.wasm.proxy = false;
    tapConsole();
  }

  available(): Accelerator[] {
    return 'gpu' in navigator ? ['webgpu', 'wasm'] : ['wasm'];
  }

  async load(model: Uint8Array, accelerator: Accelerator, inputShape: number[]): Promise<LoadedModel> {
    // ORT prints where each node was placed at session creation (verbose log level only).
    const from = ORT_LOG.length;
    const prevLevel = ort.env.logLevel;
    ort.env.logLevel = 'verbose';
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(model, {
        executionProviders: [accelerator],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 0,
        logVerbosityLevel: 0,
      });
    } finally {
      ort.env.logLevel = prevLevel;
    }
    const lines = ORT_LOG.splice(from);
    const inputName = session.inputNames[0];
    const outputName = session.outputNames[0];
    const placement = parsePlacement(lines);
    const version = this.version;
    const onAccel = placement?.[accelerator] ?? null;
    const elsewhere = placement ? Object.entries(placement).filter(([k]) => k !== accelerator).reduce((s, [, v]) => s + v, 0) : 0;
    return {
      async run(input: Float32Array): Promise<RunResult> {
        const feeds = { [inputName]: new ort.Tensor('float32', input, inputShape) };
        const t0 = performance.now();
        const res = await session.run(feeds);
        const tDispatched = performance.now();
        const data = await res[outputName].getData();
        const t1 = performance.now();
        for (const t of Object.values(res)) t.dispose();
        return { output: data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>), t0, tDispatched, t1 };
      },
      describe() {
        const notes: Record<string, string> = {};
        if (!placement) notes.placement = 'onnxruntime-web logged no node placement';
        else if (accelerator !== 'wasm' && elsewhere > 0) {
          notes.placement = `partial: ${elsewhere} node(s) on other providers than ${accelerator} (${onAccel ?? 0} on ${accelerator})`;
        }
        return {
          name: 'onnxruntime-web', version, accelerator,
          // every node on another provider: the whole model ran there
          acceleratorUsed: placement && accelerator !== 'wasm' && !onAccel ? Object.keys(placement)[0] : null,
          delegate: accelerator === 'webgpu' ? 'webgpu-ep' : accelerator === 'webnn' ? 'webnn-ep' : 'wasm-cpu-ep',
          threads: accelerator === 'wasm' ? (ort.env.wasm.numThreads ?? 1) : null,
          placement, notes,
        };
      },
      dispose() { void session.release(); },
    };
  }
}
