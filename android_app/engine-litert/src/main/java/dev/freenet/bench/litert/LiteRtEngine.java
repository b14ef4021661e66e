package dev.freenet.bench.litert;

import com.google.ai.edge.litert.Accelerator;
import com.google.ai.edge.litert.CompiledModel;
import com.google.ai.edge.litert.Environment;
import com.google.ai.edge.litert.LiteRtException;
import com.google.ai.edge.litert.TensorBuffer;
import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.RuntimeInfo;
import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A .tflite model on the LiteRT 2.x CompiledModel API, compiled for the CPU accelerator (XNNPACK)
 * or the GPU accelerator. The 2.x Interpreter has no delegate API, so the GPU path exists only
 * here.
 *
 * <p>The runtime tells two things: which accelerators this device offers
 * ({@code Environment.getAvailableAccelerators()}; an engine whose accelerator is missing fails
 * with that list instead of silently running on the CPU), and, in its log, how many nodes the
 * accelerator took ("Replacing N out of M node(s) with delegate"), which is the report's
 * placement. The Java API has no call for placement.
 */
final class LiteRtEngine implements Engine {
  private final Accelerator accelerator; // CPU (XNNPACK) or GPU
  private final int threads;
  private Environment env;
  private CompiledModel model;
  private List<TensorBuffer> inputs;
  private List<TensorBuffer> outputs;
  private Map<String, Integer> placement;
  private final Map<String, String> notes = new LinkedHashMap<String, String>();

  LiteRtEngine(Accelerator accelerator, int threads) {
    this.accelerator = accelerator;
    this.threads = threads;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) throws LiteRtException {
    long logStart = System.currentTimeMillis();
    env = Environment.create();
    Set<Accelerator> available = env.getAvailableAccelerators();
    notes.put("litert_available_accelerators", String.valueOf(available));
    if (!available.contains(accelerator)) {
      throw new UnsupportedOperationException(
          "LiteRT offers the accelerators " + available + " on this device, not " + accelerator
              + " (GPU: driver/OpenCL missing, or the GPU accelerator library is not bundled;"
              + " see android_app/README.md, First build)");
    }
    CompiledModel.Options options = new CompiledModel.Options(accelerator);
    if (accelerator == Accelerator.CPU) {
      options.setCpuOptions(new CompiledModel.CpuOptions(threads, null, null));
    }
    model = CompiledModel.create(modelFile.getAbsolutePath(), options, env);
    inputs = model.createInputBuffers();
    outputs = model.createOutputBuffers();
    if (inputs.size() != 1 || outputs.isEmpty()) {
      throw new IllegalArgumentException(
          "the runner feeds one input and reads the first output; this model has "
              + inputs.size() + " inputs and " + outputs.size() + " outputs");
    }
    String unit = accelerator == Accelerator.GPU ? "gpu" : "xnnpack";
    placement = LogcatDelegation.read(logStart, unit, notes);
  }

  @Override
  public float[] run(float[] input) throws LiteRtException {
    // writeFloat/readFloat copy in and out of the accelerator's buffers; run returns when the
    // outputs are ready, so timing around this call covers the whole inference.
    inputs.get(0).writeFloat(input);
    model.run(inputs, outputs);
    return outputs.get(0).readFloat();
  }

  @Override
  public RuntimeInfo describe() {
    String delegate =
        accelerator == Accelerator.GPU ? "CompiledModel GPU" : "CompiledModel CPU (XNNPACK)";
    Integer cpuThreads = accelerator == Accelerator.CPU ? Integer.valueOf(threads) : null;
    return new RuntimeInfo(delegate, cpuThreads, false, placement, notes);
  }

  @Override
  public void close() {
    closeAll(inputs);
    closeAll(outputs);
    inputs = null;
    outputs = null;
    if (model != null) {
      model.close();
      model = null;
    }
    if (env != null) {
      env.close();
      env = null;
    }
  }

  private static void closeAll(List<TensorBuffer> buffers) {
    if (buffers != null) {
      for (TensorBuffer b : buffers) {
        b.close();
      }
    }
  }
}
