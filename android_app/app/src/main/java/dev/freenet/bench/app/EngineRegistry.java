package dev.freenet.bench.app;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.EngineFactory;
import dev.freenet.bench.core.Targets;
import java.io.File;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;

/**
 * Finds the engine modules bundled in this APK. Each engine module has a class with
 * {@code public static List<EngineFactory> factories(File cacheDir)}; they are looked up by
 * name so the app compiles and runs without them (the Debian-tools shell APK has no ML
 * runtime). A runtime that is absent is replaced by placeholders that turn every artifact it
 * would have measured into an error report saying why, instead of silently measuring less.
 */
final class EngineRegistry {
  private EngineRegistry() {}

  private static final String[][] MODULES = {
    // provider class, runtime, accelerators, human name
    {"dev.freenet.bench.litert.LiteRtEngines", "litert", "xnnpack,gpu", "LiteRT"},
    {"dev.freenet.bench.ort.OrtEngines", "onnxruntime", "cpu,nnapi", "ONNX Runtime"},
    {"dev.freenet.bench.executorch.ExecuTorchEngines", "executorch", "xnnpack,vulkan", "ExecuTorch"},
  };

  @SuppressWarnings("unchecked")
  static List<EngineFactory> load(File cacheDir, List<String> problems) {
    List<EngineFactory> out = new ArrayList<EngineFactory>();
    for (String[] m : MODULES) {
      try {
        Class<?> c = Class.forName(m[0]);
        Method f = c.getMethod("factories", File.class);
        out.addAll((List<EngineFactory>) f.invoke(null, cacheDir));
      } catch (ClassNotFoundException e) {
        String why =
            m[3]
                + " is not bundled in this APK (built without ML runtimes, e.g. by"
                + " tools/build_shell_apk.sh); build the app with Gradle/Android Studio to"
                + " measure this artifact";
        problems.add(m[3] + ": not bundled");
        for (String acc : m[2].split(",")) {
          out.add(new Missing(m[1], acc, why));
        }
      } catch (Throwable t) {
        // The module is there but failed to initialise (e.g. a missing native library for
        // this ABI): keep the reason in every report it would have produced.
        String why = m[3] + " failed to initialise: " + t;
        problems.add(why);
        for (String acc : m[2].split(",")) {
          out.add(new Missing(m[1], acc, why));
        }
      }
    }
    return out;
  }

  /** Stands in for an engine that is not available; create() fails with the reason. */
  static final class Missing implements EngineFactory {
    private final String runtime;
    private final String accelerator;
    private final String reason;

    Missing(String runtime, String accelerator, String reason) {
      this.runtime = runtime;
      this.accelerator = accelerator;
      this.reason = reason;
    }

    @Override
    public String runtime() {
      return runtime;
    }

    @Override
    public String version() {
      return "not-bundled";
    }

    @Override
    public String accelerator() {
      return accelerator;
    }

    @Override
    public boolean supports(BundleManifest.Artifact artifact) {
      return Targets.supports(runtime, accelerator, artifact);
    }

    @Override
    public Engine create() {
      throw new UnsupportedOperationException(reason);
    }
  }
}
