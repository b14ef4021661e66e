package dev.freenet.bench.executorch;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.RuntimeInfo;
import java.io.File;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * A .pte program on the ExecuTorch Module API. Load time includes {@code loadMethod("forward")}
 * (delegate initialisation, e.g. Vulkan shader compilation) so the first inference is not
 * charged for it. ExecuTorch tells which backends the method uses, not node counts per backend,
 * so the report gets the backends as its delegate and no placement.
 */
final class ExecuTorchEngine implements Engine {
  private final String accelerator;
  private Module module;
  private long[] shape;
  private String backends = null;
  private final Map<String, String> notes = new LinkedHashMap<String, String>();

  ExecuTorchEngine(String accelerator) {
    this.accelerator = accelerator;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) throws Exception {
    shape = artifact.inputs.get(0).shape;
    module = Module.load(modelFile.getAbsolutePath());
    int err = module.loadMethod("forward");
    if (err != 0) {
      throw new IllegalStateException(
          "ExecuTorch loadMethod(forward) failed with error 0x" + Integer.toHexString(err)
              + hint());
    }
    String[] used = module.getMethodMetadata("forward").getBackends();
    backends = used == null || used.length == 0 ? "portable (no delegate)" : join(used);
    notes.put("executorch_backends", backends);
    if (!backends.toLowerCase().contains(accelerator)) {
      // A .pte for another backend would run, but this engine's label would be a lie.
      throw new IllegalStateException(
          "this program uses backends [" + backends + "], not " + accelerator
              + ": the bundle's target does not match its lowering");
    }
  }

  private String hint() {
    return "vulkan".equals(accelerator)
        ? " (the Maven ExecuTorch AAR has no Vulkan backend: build executorch.aar with Vulkan"
            + " and set executorchAar in gradle.properties, see README.md)"
        : "";
  }

  @Override
  public float[] run(float[] input) {
    EValue[] out = module.forward(EValue.from(Tensor.fromBlob(input, shape)));
    if (out.length == 0) {
      throw new IllegalStateException("ExecuTorch forward returned no outputs" + hint());
    }
    return out[0].toTensor().getDataAsFloatArray();
  }

  @Override
  public RuntimeInfo info() {
    return new RuntimeInfo(backends, null, false);
  }

  @Override
  public Map<String, Integer> placement() {
    return null;
  }

  @Override
  public Map<String, String> notes() {
    return notes;
  }

  @Override
  public void close() {
    if (module != null) {
      module.destroy();
      module = null;
    }
  }

  private static String join(String[] parts) {
    StringBuilder sb = new StringBuilder();
    for (String p : Arrays.asList(parts)) {
      if (sb.length() > 0) {
        sb.append(", ");
      }
      sb.append(p);
    }
    return sb.toString();
  }
}
