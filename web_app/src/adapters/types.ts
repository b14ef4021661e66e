// The contract every runtime adapter implements: the same load / run / describe steps the native
// apps' engines expose (android_app bench-core Engine), so the protocol loop is runtime-agnostic.

export type Accelerator = 'webgpu' | 'wasm' | 'webnn';

/** What a loaded model says about itself, in the report's runtime terms. */
export interface RuntimeDescription {
  name: 'onnxruntime-web' | 'litert-js';
  version: string;
  accelerator: Accelerator;
  /** Set only when the whole model runs on another path than asked (e.g. asked webgpu, ran wasm). */
  acceleratorUsed: string | null;
  delegate: string | null;
  threads: number | null;
  /** Ops / nodes per compute unit where the runtime tells them. */
  placement: Record<string, number> | null;
  notes: Record<string, string>;
}

/**
 * One inference. `t0` is taken before the input is handed to the runtime, `tDispatched` when the
 * runtime's run() call returned, `t1` after the output is readable on the CPU (GPU work done and
 * read back). A sample is always t1 - t0.
 */
export interface RunResult {
  output: Float32Array;
  t0: number;
  tDispatched: number;
  t1: number;
}

export interface LoadedModel {
  run(input: Float32Array): Promise<RunResult>;
  describe(): RuntimeDescription;
  dispose(): void;
}

export interface RuntimeAdapter {
  readonly name: RuntimeDescription['name'];
  readonly format: 'onnx' | 'tflite';
  readonly version: string;
  /** Accelerators this browser offers to this runtime. */
  available(): Accelerator[];
  load(model: Uint8Array, accelerator: Accelerator, inputShape: number[]): Promise<LoadedModel>;
}
