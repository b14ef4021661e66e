package dev.freenet.bench.executorch;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.RuntimeInfo;
import java.io.File;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.pytorch.executorch.EValue;
import org.pytorch.executorch.ExecuTorchRuntime;
import org.pytorch.executorch.ExecutorchRuntimeException;
import org.pytorch.executorch.Module;
import org.pytorch.executorch.Tensor;

/**
 * A .pte program on the ExecuTorch Module API. Load time includes {@code loadMethod("forward")}
 * (delegate initialisation, e.g. Vulkan shader compilation) so the first inference is not
 * charged for it. ExecuTorch tells which backends the method uses, not node counts per backend,
 * so the report gets the backends as its delegate and no placement.
 */
final class ExecuTorchEngine implements Engine {
  private final String accelerator; // "xnnpack" or "vulkan", as the bundle's target names it
  private Module module;
  private long[] shape;
  private String backends;
  private final Map<String, String> notes = new LinkedHashMap<String, String>();

  ExecuTorchEngine(String accelerator) {
    this.accelerator = accelerator;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) {
    shape = artifact.inputs.get(0).shape;
    module = Module.load(modelFile.getAbsolutePath());
    try {
      // Since ExecuTorch 1.3 this returns nothing and throws on failure.
      module.loadMethod("forward");
    } catch (ExecutorchRuntimeException e) {
      throw new IllegalStateException(
          "ExecuTorch could not load method forward (error " + e.getErrorCode() + ": "
              + e.getMessage() + ")" + missingBackend(),
          e);
    }
    String[] used = module.getMethodMetadata("forward").getBackends();
    backends = used == null || used.length == 0 ? "portable (no delegate)" : Arrays.toString(used);
    notes.put("executorch_backends", backends);
    if (!backends.toLowerCase().contains(accelerator)) {
      // A .pte for another backend would run, but this engine's label would be a lie.
      throw new IllegalStateException(
          "this program uses backends " + backends + ", not " + accelerator
              + ": the bundle's target does not match its lowering");
    }
  }

  /** Why a Vulkan program cannot load: this build's AAR does not register the backend. */
  private String missingBackend() {
    String registered = Arrays.toString(ExecuTorchRuntime.getRegisteredBackends());
    notes.put("executorch_registered_backends", registered);
    if ("vulkan".equals(accelerator) && !registered.toLowerCase().contains("vulkan")) {
      return "; this app's ExecuTorch AAR registers " + registered + " and no Vulkan backend:"
          + " build with -PexecutorchVulkan=true (org.pytorch:executorch-android-vulkan),"
          + " see android_app/README.md";
    }
    return "";
  }

  @Override
  public float[] run(float[] input) {
    EValue[] out = module.forward(EValue.from(Tensor.fromBlob(input, shape)));
    if (out.length == 0) {
      throw new IllegalStateException("ExecuTorch forward returned no outputs");
    }
    return out[0].toTensor().getDataAsFloatArray();
  }

  @Override
  public RuntimeInfo describe() {
    return new RuntimeInfo(backends, null, false, null, notes);
  }

  @Override
  public void close() {
    if (module != null) {
      module.destroy();
      module = null;
    }
  }
}
