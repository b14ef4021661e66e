// LiteRT.js adapter: the bundle's .tflite files on `webgpu`, `wasm` (XNNPACK) or `webnn`.
// model.run() returns tensors that still live on the GPU: the sample stops only after
// `moveTo('wasm')` has copied the output back to CPU memory, i.e. after the GPU work completed.
import { Tensor, loadAndCompile, loadLiteRt, type CompiledModel } from '@litertjs/core';
import type { Accelerator, LoadedModel, RunResult, RuntimeAdapter } from './types';

declare const __LITERT_VERSION__: string;

export class LiteRtAdapter implements RuntimeAdapter {
  readonly name = 'litert-js' as const;
  readonly format = 'tflite' as const;
  readonly version = __LITERT_VERSION__;
  private ready: Promise<unknown> | null = null;
  private warnings: string[] = [];

  constructor(private readonly assetBase: string) {}

  available(): Accelerator[] {
    const out: Accelerator[] = [];
    if ('gpu' in navigator) out.push('webgpu');
    out.push('wasm');
    if ('ml' in navigator) out.push('webnn');
    return out;
  }

  private init(): Promise<unknown> {
    this.ready ??= loadLiteRt(this.assetBase); // picks the JSPI / plain wasm build the browser can run
    return this.ready;
  }

  async load(bytes: Uint8Array, accelerator: Accelerator, inputShape: number[]): Promise<LoadedModel> {
    await this.init();
    // LiteRT.js says on the console when a model is not fully compiled for the accelerator.
    const orig = console.warn;
    const seen: string[] = [];
    console.warn = (...a: unknown[]) => { seen.push(a.map(String).join(' ')); orig(...a); };
    let model: CompiledModel;
    try {
      model = await loadAndCompile(bytes.slice(), { accelerator });
    } finally {
      console.warn = orig;
    }
    this.warnings = seen.filter((s) => s.includes('[LiteRT]'));
    // 'wasm' after LiteRT.js's own whole-model fallback. It may also claim an accelerator the browser
    // does not have (asked 'webnn' without navigator.ml it compiles "fully" and runs its wasm CPU
    // kernels): such a run is labelled with the path it can really have taken, wasm.
    const claimed = model.options.accelerator;
    const missing = (claimed === 'webnn' && !('ml' in navigator)) || (claimed === 'webgpu' && !('gpu' in navigator));
    const used = missing ? 'wasm' : claimed;
    const fully = used === 'wasm' ? true : model.isFullyAccelerated;
    const version = this.version;
    const warnings = this.warnings;
    const size = inputShape.reduce((a, b) => a * b, 1);
    return {
      async run(input: Float32Array): Promise<RunResult> {
        if (input.length !== size) throw new Error(`input has ${input.length} values, the model wants ${size}`);
        const inT = new Tensor(input, inputShape);
        const t0 = performance.now();
        const outs = await model.run(inT);
        const tDispatched = performance.now();
        const onCpu = await outs[0].moveTo('wasm'); // waits for the GPU work and reads it back
        const data = (onCpu.toTypedArray() as Float32Array).slice();
        const t1 = performance.now();
        onCpu.delete();
        for (const o of outs.slice(1)) o.delete();
        if (!inT.deleted) inT.delete();
        return { output: data, t0, tDispatched, t1 };
      },
      describe() {
        const notes: Record<string, string> = {};
        if (warnings.length) notes.runtime_log = warnings.join(' | ').replace(/%c/g, '').slice(0, 1900);
        if (missing) notes.fallback = `asked ${accelerator}: this browser has no ${claimed === 'webnn' ? 'WebNN (navigator.ml)' : 'WebGPU (navigator.gpu)'}, so the whole model ran on LiteRT.js's wasm CPU path (LiteRT.js said ${claimed})`;
        else if (used !== accelerator) notes.fallback = `asked ${accelerator}, LiteRT.js compiled the whole model for ${used}`;
        else if (!fully) notes.placement = `partial: some ops delegated to wasm (LiteRT.js isFullyAccelerated=false on ${accelerator})`;
        else if (used !== 'wasm') notes.placement = `all ops on ${used} (LiteRT.js isFullyAccelerated=true)`;
        return {
          name: 'litert-js', version, accelerator,
          acceleratorUsed: used !== accelerator ? used : null,
          delegate: used === 'webgpu' ? (fully ? 'webgpu' : 'webgpu+wasm') : used === 'webnn' ? (fully ? 'webnn' : 'webnn+wasm') : 'xnnpack-wasm',
          threads: used === 'wasm' ? 1 : null,
          placement: null, // LiteRT.js tells full vs partial, not op counts
          notes,
        };
      },
      dispose() { model.delete(); },
    };
  }
}
