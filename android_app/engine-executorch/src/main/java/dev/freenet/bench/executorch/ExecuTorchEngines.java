package dev.freenet.bench.executorch;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.EngineFactory;
import dev.freenet.bench.core.Targets;
import java.io.File;
import java.util.ArrayList;
import java.util.List;

/**
 * Entry point found by the app's EngineRegistry: ExecuTorch programs lowered to XNNPACK or to
 * Vulkan. The backend is baked into the .pte at export time, so each engine only takes the
 * artifacts whose target names it.
 */
public final class ExecuTorchEngines {
  private ExecuTorchEngines() {}

  public static List<EngineFactory> factories(File cacheDir) {
    List<EngineFactory> out = new ArrayList<EngineFactory>();
    out.add(new Factory("xnnpack"));
    out.add(new Factory("vulkan"));
    return out;
  }

  static final class Factory implements EngineFactory {
    private final String accelerator;

    Factory(String accelerator) {
      this.accelerator = accelerator;
    }

    @Override
    public String runtime() {
      return "executorch";
    }

    @Override
    public String version() {
      return BuildConfig.RUNTIME_VERSION;
    }

    @Override
    public String accelerator() {
      return accelerator;
    }

    @Override
    public boolean supports(BundleManifest.Artifact artifact) {
      return Targets.supports(runtime(), accelerator, artifact);
    }

    @Override
    public Engine create() {
      return new ExecuTorchEngine(accelerator);
    }
  }
}
