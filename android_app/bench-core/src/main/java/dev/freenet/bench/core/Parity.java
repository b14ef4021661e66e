package dev.freenet.bench.core;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/**
 * The parity verdict of one on-device output against the bundle's reference output, as the
 * protocol defines it (docs/protocol.md "Parity"; the one definition is
 * {@code device_bench.schema.parity_tolerance}): {@code rel_diff = max|out - ref| / max|ref|},
 * compared with a bound that depends on the precision and on whether the compute path may run in
 * fp16. A failing verdict makes the report {@code parity_failed}, never {@code ok}.
 */
public final class Parity {
  /** fp32 on a path that computes in fp32: other kernels and summation orders only. */
  public static final double FP32_CPU_TOLERANCE = 1e-3;
  /** fp16 models, and fp32 models on GPU/NPU paths, which may compute in fp16. */
  public static final double FP16_TOLERANCE = 5e-2;
  /** fp16's smallest normal number: a reference below it cannot judge an fp16 path. */
  public static final double FP16_MIN_NORMAL = 6.1e-5; // as export.manifest.FP16_MIN_NORMAL
  /** Accelerators that compute fp32 models in fp32. */
  public static final Set<String> CPU_ACCELERATORS =
      new HashSet<String>(Arrays.asList("cpu", "xnnpack", "wasm", "portable"));

  public final double maxAbsDiff;
  public final double referenceMaxAbs;
  public final double relDiff;
  public final Double tolerance; // null: no bound applies (int8, or an inconclusive fp16 bound)
  public final Boolean passed; // null exactly when tolerance is null

  private Parity(double maxAbsDiff, double referenceMaxAbs, double relDiff, Double tolerance) {
    this.maxAbsDiff = maxAbsDiff;
    this.referenceMaxAbs = referenceMaxAbs;
    this.relDiff = relDiff;
    this.tolerance = tolerance;
    this.passed = tolerance == null ? null : Boolean.valueOf(relDiff <= tolerance);
  }

  /** The bound for a precision on an accelerator, or null where none applies (int8). */
  public static Double tolerance(String precision, String accelerator) {
    if ("int8".equals(precision)) {
      return null;
    }
    if ("fp32".equals(precision) && CPU_ACCELERATORS.contains(accelerator)) {
      return FP32_CPU_TOLERANCE;
    }
    return FP16_TOLERANCE;
  }

  /** Judges one output; throws when the output is unusable (wrong length, NaN, infinity). */
  public static Parity judge(float[] out, float[] ref, String precision, String accelerator) {
    if (out == null || ref == null || out.length != ref.length) {
      throw new IllegalStateException(
          "output has "
              + (out == null ? "no" : String.valueOf(out.length))
              + " values, reference output has "
              + (ref == null ? "no" : String.valueOf(ref.length)));
    }
    double maxDiff = 0;
    double maxRef = 0;
    for (int i = 0; i < out.length; i++) {
      double d = Math.abs((double) out[i] - (double) ref[i]);
      if (Double.isNaN(d) || Double.isInfinite(d)) {
        throw new IllegalStateException("output element " + i + " is " + out[i] + " (not finite)");
      }
      maxDiff = Math.max(maxDiff, d);
      maxRef = Math.max(maxRef, Math.abs((double) ref[i]));
    }
    double rel = maxRef > 0 ? maxDiff / maxRef : maxDiff;
    Double tol = tolerance(precision, accelerator);
    if (tol != null && tol >= FP16_TOLERANCE && maxRef < FP16_MIN_NORMAL) {
      tol = null; // the reference underflows fp16: the comparison says nothing
    }
    return new Parity(maxDiff, maxRef, rel, tol);
  }

  /** The reason text of a failing verdict, for the report's {@code error}. */
  public String failure() {
    return String.format(
        java.util.Locale.US,
        "output differs from the bundle's reference: rel_diff %.3g (max|diff| %.3g / max|ref| %.3g)"
            + " > tolerance %.0e; the samples are kept but are not a speed result",
        relDiff,
        maxAbsDiff,
        referenceMaxAbs,
        tolerance);
  }
}
