package dev.freenet.bench.ort;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.EngineFactory;
import dev.freenet.bench.core.Targets;
import java.io.File;
import java.util.ArrayList;
import java.util.List;

/** Entry point found by the app's EngineRegistry: ONNX Runtime on CPU and on NNAPI. */
public final class OrtEngines {
  private OrtEngines() {}

  static final int CPU_THREADS = 4;

  public static List<EngineFactory> factories(File cacheDir) {
    List<EngineFactory> out = new ArrayList<EngineFactory>();
    out.add(new Factory(false, cacheDir));
    out.add(new Factory(true, cacheDir));
    return out;
  }

  static final class Factory implements EngineFactory {
    private final boolean nnapi;
    private final File cacheDir;

    Factory(boolean nnapi, File cacheDir) {
      this.nnapi = nnapi;
      this.cacheDir = cacheDir;
    }

    @Override
    public String runtime() {
      return "onnxruntime";
    }

    @Override
    public String version() {
      return BuildConfig.RUNTIME_VERSION;
    }

    @Override
    public String accelerator() {
      return nnapi ? "nnapi" : "cpu";
    }

    @Override
    public boolean supports(BundleManifest.Artifact artifact) {
      return Targets.supports(runtime(), accelerator(), artifact);
    }

    @Override
    public Engine create() {
      return new OrtEngine(nnapi, CPU_THREADS, cacheDir);
    }
  }
}
