package dev.freenet.bench.litert;

import com.google.ai.edge.litert.Accelerator;
import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.EngineFactory;
import dev.freenet.bench.core.Targets;
import java.io.File;
import java.util.ArrayList;
import java.util.List;

/**
 * Entry point found by the app's EngineRegistry: LiteRT's CompiledModel on the CPU accelerator
 * (reported as {@code xnnpack}, what LiteRT's CPU accelerator runs) and on the GPU accelerator.
 */
public final class LiteRtEngines {
  private LiteRtEngines() {}

  /** CPU threads for XNNPACK: 4 is what LiteRT's own benchmark tool uses on phones. */
  static final int CPU_THREADS = 4;

  public static List<EngineFactory> factories(File cacheDir) {
    List<EngineFactory> out = new ArrayList<EngineFactory>();
    out.add(new Factory(false));
    out.add(new Factory(true));
    return out;
  }

  static final class Factory implements EngineFactory {
    private final boolean gpu;

    Factory(boolean gpu) {
      this.gpu = gpu;
    }

    @Override
    public String runtime() {
      return "litert";
    }

    @Override
    public String version() {
      return BuildConfig.RUNTIME_VERSION;
    }

    @Override
    public String accelerator() {
      return gpu ? "gpu" : "xnnpack";
    }

    @Override
    public boolean supports(BundleManifest.Artifact artifact) {
      return Targets.supports(runtime(), accelerator(), artifact);
    }

    @Override
    public Engine create() {
      return new LiteRtEngine(gpu ? Accelerator.GPU : Accelerator.CPU, CPU_THREADS);
    }
  }
}
