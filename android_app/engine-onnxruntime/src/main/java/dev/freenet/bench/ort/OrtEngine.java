package dev.freenet.bench.ort;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.Json;
import dev.freenet.bench.core.ReportQueue;
import dev.freenet.bench.core.RuntimeInfo;
import java.io.File;
import java.io.IOException;
import java.nio.FloatBuffer;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An .onnx model on ONNX Runtime with the default CPU execution provider or with the NNAPI
 * execution provider first (CPU takes what NNAPI cannot).
 *
 * <p>Placement comes from ONNX Runtime's own profiler, run in a separate session after the
 * timed runs so that profiling never slows the measured inferences: each executed kernel names
 * its execution provider. A fused NNAPI partition is one kernel there, so the counts are
 * kernels per provider, not original graph nodes (said in the report's notes).
 */
final class OrtEngine implements Engine {
  private final boolean nnapi;
  private final int threads;
  private final File cacheDir;
  private OrtEnvironment env;
  private OrtSession session;
  private File modelFile;
  private String inputName;
  private long[] shape;
  private float[] lastInput;
  private Map<String, Integer> placement;
  private final Map<String, String> notes = new LinkedHashMap<String, String>();

  OrtEngine(boolean nnapi, int threads, File cacheDir) {
    this.nnapi = nnapi;
    this.threads = threads;
    this.cacheDir = cacheDir;
  }

  private OrtSession.SessionOptions options(File profilePrefix) throws OrtException {
    OrtSession.SessionOptions o = new OrtSession.SessionOptions();
    o.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
    o.setIntraOpNumThreads(threads);
    if (nnapi) {
      o.addNnapi();
    }
    if (profilePrefix != null) {
      o.enableProfiling(profilePrefix.getAbsolutePath());
    }
    return o;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) throws Exception {
    this.modelFile = modelFile;
    env = OrtEnvironment.getEnvironment();
    session = env.createSession(modelFile.getAbsolutePath(), options(null));
    inputName = session.getInputNames().iterator().next();
    // The manifest's shape is static; the graph's may have symbolic dims (-1).
    shape = artifact.inputs.get(0).shape;
  }

  @Override
  public float[] run(float[] input) throws OrtException {
    lastInput = input;
    return runOnce(session, input);
  }

  private float[] runOnce(OrtSession s, float[] input) throws OrtException {
    OnnxTensor t = OnnxTensor.createTensor(env, FloatBuffer.wrap(input), shape);
    try {
      OrtSession.Result r = s.run(Collections.singletonMap(inputName, t));
      try {
        OnnxValue v = r.get(0);
        FloatBuffer fb = ((OnnxTensor) v).getFloatBuffer();
        float[] out = new float[fb.remaining()];
        fb.get(out);
        return out;
      } finally {
        r.close();
      }
    } finally {
      t.close();
    }
  }

  @Override
  public RuntimeInfo describe() {
    if (placement == null && lastInput != null) {
      placement = profilePlacement();
    }
    return new RuntimeInfo(
        nnapi ? "NnapiExecutionProvider" : "CPUExecutionProvider", threads, false, placement, notes);
  }

  private Map<String, Integer> profilePlacement() {
    OrtSession profiled = null;
    try {
      if (!cacheDir.isDirectory() && !cacheDir.mkdirs()) {
        throw new IOException("cannot create " + cacheDir);
      }
      profiled =
          env.createSession(
              modelFile.getAbsolutePath(), options(new File(cacheDir, "ort_profile")));
      runOnce(profiled, lastInput);
      File trace = new File(profiled.endProfiling());
      Map<String, Integer> counts = kernelsPerProvider(ReportQueue.read(trace));
      trace.delete();
      notes.put(
          "placement",
          "ONNX Runtime profiler: kernels executed per execution provider in one extra run"
              + " (a fused NNAPI partition counts as one)");
      return counts.isEmpty() ? null : counts;
    } catch (Exception e) {
      notes.put("placement", "ONNX Runtime profiling failed: " + e);
      return null;
    } finally {
      if (profiled != null) {
        try {
          profiled.close();
        } catch (OrtException ignored) {
          // Placement is best effort; the measurement is already complete.
        }
      }
    }
  }

  /** Counts distinct node names per provider in the profiler's Chrome-trace JSON. */
  static Map<String, Integer> kernelsPerProvider(String traceJson) {
    Map<String, Set<String>> nodes = new LinkedHashMap<String, Set<String>>();
    Object root = Json.parse(traceJson);
    if (!(root instanceof List)) {
      return new LinkedHashMap<String, Integer>();
    }
    for (Object o : (List<?>) root) {
      if (!(o instanceof Map)) {
        continue;
      }
      Map<?, ?> ev = (Map<?, ?>) o;
      Object args = ev.get("args");
      if (!"Node".equals(ev.get("cat")) || !(args instanceof Map)) {
        continue;
      }
      Object provider = ((Map<?, ?>) args).get("provider");
      Object name = ev.get("name");
      if (!(provider instanceof String) || !(name instanceof String)) {
        continue;
      }
      String unit = unitOf((String) provider);
      if (!nodes.containsKey(unit)) {
        nodes.put(unit, new HashSet<String>());
      }
      nodes.get(unit).add(((String) name).replaceAll("_(kernel_time|fence_before|fence_after)$", ""));
    }
    Map<String, Integer> out = new LinkedHashMap<String, Integer>();
    for (Map.Entry<String, Set<String>> e : nodes.entrySet()) {
      out.put(e.getKey(), e.getValue().size());
    }
    return out;
  }

  /** "NnapiExecutionProvider" -> "nnapi", "CPUExecutionProvider" -> "cpu". */
  static String unitOf(String provider) {
    String p = provider.replace("ExecutionProvider", "").toLowerCase();
    return p.isEmpty() ? "unknown" : p.replaceAll("[^a-z0-9_.+-]", "_");
  }

  @Override
  public void close() throws IOException {
    if (session != null) {
      try {
        session.close();
      } catch (OrtException e) {
        throw new IOException(e);
      }
      session = null;
    }
  }
}
