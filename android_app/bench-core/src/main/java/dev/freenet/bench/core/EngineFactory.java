package dev.freenet.bench.core;

/**
 * Creates engines of one runtime + accelerator and says which artifacts they can run.
 *
 * <p>The runner measures every (artifact, factory) pair for which {@link #supports} is true, so
 * one ONNX file is measured on ONNX Runtime CPU and NNAPI, one .tflite on XNNPACK and GPU.
 */
public interface EngineFactory {
  /** Report runtime name: "litert", "onnxruntime" or "executorch". */
  String runtime();

  /** Version of the runtime library bundled in the app (from the Gradle dependency). */
  String version();

  /** Report accelerator: "xnnpack", "gpu", "cpu", "nnapi", "vulkan", ... */
  String accelerator();

  boolean supports(BundleManifest.Artifact artifact);

  Engine create() throws Exception;
}
