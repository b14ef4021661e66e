// On-device parity: the output of the reference input against the bundle's reference output.
// The tolerance table is src/tolerance.json, a mirror of device_bench.schema.parity_tolerance
// (a Python test evaluates this module and compares it with the Python definition).
import table from './tolerance.json';

export interface Parity {
  max_abs_diff: number | null;
  reference_checked: boolean;
  rel_diff: number | null;
  tolerance: number | null;
  passed: boolean | null;
}

/** The relative bound for a precision and the compute path that really ran, or null (int8). */
export function parityTolerance(precision: string, accelerator: string): number | null {
  if (table.no_bound_precisions.includes(precision)) return null;
  if (precision === 'fp32' && table.cpu_accelerators.includes(accelerator)) return table.fp32_cpu;
  return table.fp16;
}

/** rel_diff = max|out - ref| / max|ref|, judged against parityTolerance (null where inconclusive). */
export function judgeParity(out: Float32Array, ref: Float32Array, precision: string, accelerator: string): Parity {
  if (out.length !== ref.length) {
    throw new Error(`output has ${out.length} values, the bundle's reference output ${ref.length}`);
  }
  let maxAbs = 0;
  let refMax = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(out[i] - ref[i]);
    if (!(d <= maxAbs)) maxAbs = d; // NaN propagates: NaN is never <= anything
    refMax = Math.max(refMax, Math.abs(ref[i]));
  }
  if (!Number.isFinite(maxAbs)) throw new Error('output holds NaN or Infinity');
  return judge(maxAbs, refMax, precision, accelerator);
}

export function judge(maxAbs: number, refMax: number, precision: string, accelerator: string): Parity {
  let tol = parityTolerance(precision, accelerator);
  const rel = refMax > 0 ? maxAbs / refMax : maxAbs;
  if (tol !== null && tol >= table.fp16 && refMax < table.fp16_min_normal) tol = null; // fp16 underflow: inconclusive
  return { max_abs_diff: maxAbs, reference_checked: true, rel_diff: rel, tolerance: tol, passed: tol === null ? null : rel <= tol };
}
