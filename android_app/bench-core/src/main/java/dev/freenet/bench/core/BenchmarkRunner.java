package dev.freenet.bench.core;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The measurement loop: fetch the bundle manifest, download and sha256-check each artifact and
 * its reference tensors, then for every artifact x engine: thermal state, cool-down while hot,
 * load time, first inference, warm-ups, N timed runs (every raw sample kept), parity against
 * the reference output, placement as the runtime reports it, thermal state again; write the
 * report to the durable queue and try to upload it.
 *
 * <p>Every artifact x engine pair yields exactly one report; any failure becomes a report with
 * status "error" and the reason (plus what was measured before the failure), never a silent
 * skip or an empty success. Only a manifest that cannot be fetched yields no report, because
 * there is no artifact to attribute it to: {@link #run} then throws.
 */
public final class BenchmarkRunner {
  /** Progress callbacks, called on the runner's thread. */
  public interface Listener {
    void onMessage(String message);

    void onReport(Report report, ReportQueue.FlushResult upload);
  }

  private final BenchConfig cfg;
  private final List<EngineFactory> factories;
  private final DeviceInfo device;
  private final ThermalProbe thermal;
  private final Clock clock;
  private final AggregatorClient client;
  private final ReportQueue queue;

  public BenchmarkRunner(
      BenchConfig cfg,
      List<EngineFactory> factories,
      DeviceInfo device,
      ThermalProbe thermal,
      Clock clock)
      throws IOException {
    cfg.validate();
    this.cfg = cfg;
    this.factories = new ArrayList<EngineFactory>(factories);
    this.device = device;
    this.thermal = thermal;
    this.clock = clock;
    this.client = new AggregatorClient(cfg.serverUrl, cfg.token.trim());
    this.queue = new ReportQueue(new File(cfg.workDir, "reports"));
  }

  public ReportQueue queue() {
    return queue;
  }

  public AggregatorClient client() {
    return client;
  }

  /** Runs everything; returns the reports in order. Throws if the manifest is unavailable. */
  public List<Report> run(Listener listener) throws IOException, InterruptedException {
    String bundle = cfg.bundle.trim();
    listener.onMessage("fetching manifest of bundle " + bundle + " from " + client.baseUrl());
    BundleManifest manifest = client.fetchManifest(bundle);
    for (String skipped : manifest.notExported) {
      listener.onMessage("not measured, the export did not produce it: " + skipped);
    }
    List<Report> reports = new ArrayList<Report>();
    for (BundleManifest.Artifact artifact : manifest.artifacts) {
      if (cfg.artifactFilter != null
          && !cfg.artifactFilter.isEmpty()
          && !artifact.id.contains(cfg.artifactFilter)) {
        continue;
      }
      List<EngineFactory> engines = new ArrayList<EngineFactory>();
      for (EngineFactory f : factories) {
        if (f.supports(artifact)) {
          engines.add(f);
        }
      }
      if (engines.isEmpty()) {
        // e.g. a Core ML artifact: no Android runtime runs it, so there is nothing to report.
        listener.onMessage("skipping " + artifact + ": no Android runtime runs this format");
        continue;
      }
      listener.onMessage("downloading " + artifact.file);
      Prepared prepared = prepare(bundle, artifact);
      for (EngineFactory f : engines) {
        listener.onMessage("measuring " + artifact.id + " on " + f.runtime() + "/" + f.accelerator());
        Report r = measure(bundle, artifact, prepared, f, listener);
        reports.add(r);
        queue.enqueue(r);
        listener.onReport(r, queue.flush(client));
        if (Thread.currentThread().isInterrupted()) {
          throw new InterruptedException("benchmark cancelled");
        }
      }
    }
    return reports;
  }

  /** Downloaded, hash-checked files of one artifact, or the reason they are unusable. */
  static final class Prepared {
    File model;
    String modelSha256;
    float[] referenceInput;
    float[] referenceOutput;
    String error;
  }

  private Prepared prepare(String bundle, BundleManifest.Artifact a) {
    Prepared p = new Prepared();
    File dir = new File(new File(cfg.workDir, "bundles"), bundle);
    try {
      p.model =
          client.download(
              bundle, a.file, new File(dir, AggregatorClient.relativePath(a.file)), a.sha256);
      p.modelSha256 = a.sha256;
      if (a.reference != null) {
        File in =
            client.download(
                bundle,
                a.reference.inputFile,
                new File(dir, AggregatorClient.relativePath(a.reference.inputFile)),
                a.reference.inputSha256);
        File out =
            client.download(
                bundle,
                a.reference.outputFile,
                new File(dir, AggregatorClient.relativePath(a.reference.outputFile)),
                a.reference.outputSha256);
        p.referenceInput = readFloat32(in);
        p.referenceOutput = readFloat32(out);
      }
    } catch (Exception e) {
      p.error = "download of " + a.id + " failed: " + describe(e);
    }
    return p;
  }

  Report measure(
      String bundle,
      BundleManifest.Artifact artifact,
      Prepared prepared,
      EngineFactory factory,
      Listener listener)
      throws InterruptedException {
    Report r = new Report();
    r.createdAtMs = clock.currentTimeMillis();
    r.startedAtMs = r.createdAtMs;
    r.device = device;
    r.runtimeName = factory.runtime();
    r.runtimeVersion = factory.version();
    r.accelerator = factory.accelerator();
    r.artifact = artifact;
    r.bundle = bundle;
    r.measuredSha256 = prepared.modelSha256;
    r.warmupRuns = 0;
    r.thermalBefore = thermal.read();
    Engine engine = null;
    try {
      if (prepared.error != null) {
        throw new IOException(prepared.error);
      }
      if (artifact.inputs.size() != 1) {
        throw new IllegalArgumentException(
            "artifact has " + artifact.inputs.size() + " inputs; the runner feeds exactly one");
      }
      cooldown(r, listener);
      float[] input = inputFor(artifact, prepared);

      engine = factory.create();
      long t0 = clock.nanoTime();
      engine.load(prepared.model, artifact);
      r.loadMs = positiveMs(clock.nanoTime() - t0, "load");

      t0 = clock.nanoTime();
      engine.run(input);
      r.firstInferenceMs = positiveMs(clock.nanoTime() - t0, "first inference");

      for (int i = 0; i < cfg.warmupRuns; i++) {
        engine.run(input);
        r.warmupRuns = i + 1;
        checkInterrupted();
      }
      for (int i = 0; i < cfg.timedRuns; i++) {
        t0 = clock.nanoTime();
        engine.run(input);
        r.samplesMs.add(positiveMs(clock.nanoTime() - t0, "timed run " + i));
        checkInterrupted();
      }

      if (prepared.referenceInput != null) {
        float[] out = engine.run(prepared.referenceInput);
        r.parity = Parity.judge(out, prepared.referenceOutput, artifact.precision, factory.accelerator());
      } else {
        r.notes.put("parity", "bundle has no reference tensors; input was seeded noise");
      }
      describe(r, engine);
      r.thermalAfter = thermal.read();
      if (r.parity != null && Boolean.FALSE.equals(r.parity.passed)) {
        r.status = "parity_failed";
        r.error = r.parity.failure();
      } else {
        r.status = "ok";
        r.error = null;
      }
    } catch (InterruptedException e) {
      fail(r, engine, "cancelled by the user before the run finished");
      Thread.currentThread().interrupt();
    } catch (Throwable t) {
      fail(r, engine, describe(t));
    } finally {
      if (engine != null) {
        try {
          engine.close();
        } catch (Throwable ignored) {
          // Closing a failed engine must not hide the failure already recorded.
        }
      }
      r.finishedAtMs = clock.currentTimeMillis();
    }
    notesThermal(r);
    return r;
  }

  private void fail(Report r, Engine engine, String reason) {
    r.status = "error";
    r.error = reason;
    if (engine != null) {
      try {
        describe(r, engine);
      } catch (Throwable ignored) {
        // The engine is broken; the report keeps what the runner knows.
      }
    }
    r.thermalAfter = thermal.read();
  }

  /** Waits while the device reports itself hot, up to maxCooldownMs; records the wait. */
  private void cooldown(Report r, Listener listener) throws InterruptedException {
    long start = clock.nanoTime();
    ThermalProbe.Reading first = r.thermalBefore;
    ThermalProbe.Reading now = first;
    while (now.hot) {
      long waited = (clock.nanoTime() - start) / 1000000L;
      if (waited >= cfg.maxCooldownMs) {
        r.notes.put(
            "cooldown", "still hot (" + now + ") after " + waited + " ms; measured anyway");
        break;
      }
      listener.onMessage("device is hot (" + now + "), cooling down...");
      clock.sleep(cfg.cooldownPollMs);
      now = thermal.read();
    }
    r.cooldownMs = (clock.nanoTime() - start) / 1e6;
    if (now != first) {
      // The report's "before" is the state right before the timed runs; keep the first reading.
      r.notes.put("thermal_at_start", first.toString() + " (" + first.raw + ")");
      r.thermalBefore = now;
    }
  }

  private static void notesThermal(Report r) {
    if (r.thermalBefore != null && r.thermalBefore.raw != null) {
      r.notes.put("thermal_before_raw", r.thermalBefore.raw);
    }
    if (r.thermalAfter != null && r.thermalAfter.raw != null) {
      r.notes.put("thermal_after_raw", r.thermalAfter.raw);
    }
  }

  private static float[] inputFor(BundleManifest.Artifact a, Prepared p) {
    int n = a.inputs.get(0).elementCount();
    if (p.referenceInput != null) {
      if (p.referenceInput.length != n) {
        throw new IllegalArgumentException(
            "reference input has " + p.referenceInput.length + " floats, input shape needs " + n);
      }
      return p.referenceInput;
    }
    // Fixed seed: runs of the same artifact see the same input.
    Random rnd = new Random(0);
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) rnd.nextGaussian();
    }
    return x;
  }

  private static double positiveMs(long nanos, String what) {
    if (nanos <= 0) {
      throw new IllegalStateException(what + " took " + nanos + " ns: the clock is unusable");
    }
    return nanos / 1e6;
  }

  private static void checkInterrupted() throws InterruptedException {
    if (Thread.currentThread().isInterrupted()) {
      throw new InterruptedException();
    }
  }

  private static void describe(Report r, Engine engine) {
    RuntimeInfo info = engine.describe();
    r.runtimeInfo = info;
    if (info != null) {
      r.placement = info.placement;
      r.notes.putAll(info.notes);
    }
  }

  static float[] readFloat32(File f) throws IOException {
    long len = f.length();
    if (len % 4 != 0 || len > Integer.MAX_VALUE) {
      throw new IOException(f + " is " + len + " bytes: not a raw float32 tensor");
    }
    byte[] bytes = new byte[(int) len];
    InputStream in = new FileInputStream(f);
    try {
      int off = 0;
      while (off < bytes.length) {
        int n = in.read(bytes, off, bytes.length - off);
        if (n < 0) {
          throw new IOException("short read of " + f);
        }
        off += n;
      }
    } finally {
      in.close();
    }
    float[] out = new float[bytes.length / 4];
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
    return out;
  }

  /** The exception's class and message, plus the top of the stack for unexpected ones. */
  static String describe(Throwable t) {
    String msg = t.getClass().getSimpleName() + ": " + t.getMessage();
    Throwable cause = t.getCause();
    if (cause != null && cause != t) {
      msg += " (caused by " + cause.getClass().getSimpleName() + ": " + cause.getMessage() + ")";
    }
    if (t instanceof IOException || t instanceof IllegalArgumentException) {
      return msg;
    }
    StringWriter sw = new StringWriter();
    t.printStackTrace(new PrintWriter(sw));
    String stack = sw.toString();
    return msg + "\n" + (stack.length() > 4000 ? stack.substring(0, 4000) : stack);
  }
}
