package dev.freenet.bench.core;

import java.io.Closeable;
import java.io.File;

/**
 * One inference runtime bound to one accelerator, holding one loaded model. Three calls, the
 * same contract as the iOS app's engines: {@link #load}, {@link #run}, {@link #describe}.
 *
 * <p>The runner calls {@link #load} once (timed as load_ms), then {@link #run} for the first,
 * warm-up and timed inferences, then {@link #describe} for what the runtime says it did, then
 * {@link #close}. Implementations live in the engine modules (LiteRT, ONNX Runtime, ExecuTorch)
 * and in tests (a fake engine); bench-core never imports a runtime. Any exception becomes an
 * error report with its message, so messages should say what to do (e.g. "this device has no
 * Vulkan driver").
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

  /**
   * What the runtime says it used: delegate / execution provider / backend, threads, placement
   * (null when the runtime does not tell; the runner never guesses it) and notes. Called after
   * the timed runs, and after a failure, so it must not throw for a half-loaded engine.
   */
  RuntimeInfo describe();
}
