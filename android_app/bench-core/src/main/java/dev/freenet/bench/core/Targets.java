package dev.freenet.bench.core;

/**
 * Which runtime + accelerator pairs measure which bundle artifacts ("artifact x accelerator").
 *
 * <p>A .tflite runs on LiteRT's XNNPACK CPU path and its GPU delegate, an .onnx on ONNX Runtime's
 * CPU and NNAPI execution providers, whatever target the export aimed at (the comparison is
 * the point). An ExecuTorch .pte has its backend baked in at export, so it runs only on the
 * accelerator its target names. Shared by the real engine factories and the placeholders the
 * app registers when a runtime is not bundled, so both agree on what is measured.
 */
public final class Targets {
  private Targets() {}

  public static boolean supports(String runtime, String accelerator, BundleManifest.Artifact a) {
    if ("litert".equals(runtime)) {
      return "tflite".equals(a.format)
          && ("xnnpack".equals(accelerator) || "gpu".equals(accelerator));
    }
    if ("onnxruntime".equals(runtime)) {
      return "onnx".equals(a.format) && ("cpu".equals(accelerator) || "nnapi".equals(accelerator));
    }
    if ("executorch".equals(runtime)) {
      return "executorch".equals(a.format) && ("executorch-" + accelerator).equals(a.target);
    }
    return false;
  }
}
