package dev.freenet.bench.core;

import java.io.Closeable;
import java.io.File;
import java.util.Map;

/**
 * One inference runtime bound to one accelerator, holding one loaded model.
 *
 * <p>The runner calls {@link #load} once (timed as load_ms), then {@link #run} for the first,
 * warm-up and timed inferences, then {@link #close}. Implementations live in the engine modules
 * (LiteRT, ONNX Runtime, ExecuTorch) and in tests (a fake engine); bench-core never imports a
 * runtime. Any exception becomes an error report with its message, so messages should say what
 * to do (e.g. "this device has no Vulkan driver").
 */
public interface Engine extends Closeable {
  /** Loads/compiles the model file for this engine's accelerator. */
  void load(File modelFile, BundleManifest.Artifact artifact) throws Exception;

  /**
   * Runs one inference on a float32 input laid out as the artifact's first input and returns the
   * first output, flattened. Must block until the output is ready (GPU work included) so that
   * wall-clock timing around it measures the whole inference.
   */
  float[] run(float[] input) throws Exception;

  /** Runtime facts known after {@link #load}: delegate actually used, threads, emulation. */
  RuntimeInfo info();

  /**
   * Nodes per compute unit as the runtime reported them (e.g. {"gpu": 60, "cpu": 3}), or null
   * when the runtime does not tell; the runner never guesses placement.
   */
  Map<String, Integer> placement();

  /** Free-form facts worth keeping with the report (e.g. the runtime's delegation log line). */
  Map<String, String> notes();
}
