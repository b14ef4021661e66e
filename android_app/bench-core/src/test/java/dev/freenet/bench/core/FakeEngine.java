package dev.freenet.bench.core;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Test engine without an ML runtime: the "model" file holds one little-endian float32 scale and
 * an inference computes {@code output = input * scale} plus a few passes over the data so that
 * each run takes measurable time. Used for JUnit on Linux, where no mobile runtime exists.
 */
final class FakeEngine implements Engine {
  private float scale;
  private boolean loaded;
  private final boolean failOnRun;
  private int runs;

  FakeEngine(boolean failOnRun) {
    this.failOnRun = failOnRun;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) throws Exception {
    float[] w = BenchmarkRunner.readFloat32(modelFile);
    if (w.length != 1) {
      throw new IllegalArgumentException("fake model must hold one float, has " + w.length);
    }
    scale = w[0];
    loaded = true;
  }

  @Override
  public float[] run(float[] input) throws Exception {
    if (!loaded) {
      throw new IllegalStateException("run before load");
    }
    if (failOnRun && ++runs > 3) {
      throw new IllegalStateException("simulated delegate failure on run " + runs);
    }
    float[] out = new float[input.length];
    float acc = 0;
    for (int rep = 0; rep < 4; rep++) {
      for (int i = 0; i < input.length; i++) {
        out[i] = input[i] * scale;
        acc += out[i];
      }
    }
    if (Float.isNaN(acc)) {
      throw new IllegalStateException("NaN");
    }
    return out;
  }

  @Override
  public RuntimeInfo describe() {
    Map<String, Integer> placement = new LinkedHashMap<String, Integer>();
    placement.put("fake", 1);
    Map<String, String> notes = new LinkedHashMap<String, String>();
    notes.put("engine", "bench-core FakeEngine on a JVM: output = input * scale; not a phone measurement");
    return new RuntimeInfo("FakeEngine (JUnit, no ML runtime)", 1, true, placement, notes);
  }

  @Override
  public void close() {
    loaded = false;
  }

  /** Factory for fake engines claiming a runtime/accelerator pair for the given formats. */
  static final class Factory implements EngineFactory {
    private final String runtime;
    private final String accelerator;
    private final List<String> formats;
    private final boolean failOnRun;
    int created;

    Factory(String runtime, String accelerator, List<String> formats, boolean failOnRun) {
      this.runtime = runtime;
      this.accelerator = accelerator;
      this.formats = formats;
      this.failOnRun = failOnRun;
    }

    @Override
    public String runtime() {
      return runtime;
    }

    @Override
    public String version() {
      return "jvm-fake";
    }

    @Override
    public String accelerator() {
      return accelerator;
    }

    @Override
    public boolean supports(BundleManifest.Artifact artifact) {
      return formats.contains(artifact.format);
    }

    @Override
    public Engine create() {
      created++;
      return new FakeEngine(failOnRun);
    }
  }
}
