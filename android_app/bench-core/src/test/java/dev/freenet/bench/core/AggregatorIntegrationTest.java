package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.FileOutputStream;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Runs the whole runner against the real aggregator ({@code freenet serve}) on 127.0.0.1:
 * manifest fetch, downloads with the server's X-Content-SHA256, fake-engine measurement, report
 * upload with the device token, idempotent resend, and the server's 401/422 answers.
 *
 * <p>Driven by tests/test_android_app.py, which starts the server with a temporary database and
 * a bundle holding "fake_ok" (a valid artifact), "fake_drifted" (its reference output is off by
 * half: parity fails) and "fake_tampered" (manifest sha256 wrong), and
 * passes {@code -Dfreenet.server=URL -Dfreenet.token=T -Dfreenet.bundle=B
 * -Dfreenet.reportOut=DIR}; the reports written to DIR are then validated against the JSON
 * Schema in Python. Without those properties this test fails, naming the command to use.
 */
public class AggregatorIntegrationTest {
  private static String server;
  private static String token;
  private static String bundle;
  private static File reportOut;

  @BeforeClass
  public static void properties() {
    server = System.getProperty("freenet.server");
    token = System.getProperty("freenet.token");
    bundle = System.getProperty("freenet.bundle");
    String out = System.getProperty("freenet.reportOut");
    if (server == null || token == null || bundle == null || out == null) {
      fail(
          "AggregatorIntegrationTest needs a running aggregator: run it through"
              + " `pytest tests/test_android_app.py` (or pass -Dfreenet.server, -Dfreenet.token,"
              + " -Dfreenet.bundle, -Dfreenet.reportOut)");
    }
    reportOut = new File(out);
    reportOut.mkdirs();
  }

  @Test
  public void healthSaysSchemaVersionOne() throws Exception {
    Map<String, Object> h = new AggregatorClient(server, null).health();
    assertEquals("ok", h.get("status"));
    assertEquals(Report.SCHEMA_VERSION, String.valueOf(h.get("schema_version")));
  }

  @Test
  public void fullRunUploadsOneReportPerArtifactAndEngine() throws Exception {
    BenchConfig c = new BenchConfig();
    c.serverUrl = server;
    c.token = token;
    c.bundle = bundle;
    c.warmupRuns = 2;
    c.timedRuns = 20;
    c.workDir = new File(reportOut, "work");
    // "jvm-fake": the reports this produces (committed as fixtures, shown on the dashboard)
    // must not look like a LiteRT measurement on a real accelerator.
    FakeEngine.Factory litert =
        new FakeEngine.Factory("litert", "jvm-fake", Arrays.asList("tflite"), false);
    BenchmarkRunner runner =
        new BenchmarkRunner(
            c,
            Arrays.<EngineFactory>asList(litert),
            DeviceInfo.currentJvm("0.1.0"),
            ThermalProbe.UNKNOWN,
            Clock.SYSTEM);
    final int[] acknowledged = {0};
    List<Report> reports =
        runner.run(
            new BenchmarkRunner.Listener() {
              @Override
              public void onMessage(String message) {}

              @Override
              public void onReport(Report report, ReportQueue.FlushResult upload) {
                acknowledged[0] += upload.sent;
                assertEquals(String.valueOf(upload.stoppedBecause), 0, upload.remaining);
                assertEquals("every report is new to the server", 0, upload.alreadyStored);
              }
            });

    assertEquals(3, reports.size());
    assertEquals(3, acknowledged[0]);
    Report ok = null;
    Report drifted = null;
    Report error = null;
    for (Report r : reports) {
      if (r.artifact.id.equals("fake_ok")) {
        ok = r;
      } else if (r.artifact.id.equals("fake_drifted")) {
        drifted = r;
      } else if (r.artifact.id.equals("fake_tampered")) {
        error = r;
      }
    }
    assertTrue(ok.error, ok.ok());
    assertEquals(20, ok.samplesMs.size());
    assertEquals(0.0, ok.parity.maxAbsDiff, 1e-6);
    assertEquals(Boolean.TRUE, ok.parity.passed);
    assertEquals("fake", ok.artifact.modelFamily);
    // Measured, but off the reference: kept with its samples, never "ok".
    assertEquals("parity_failed", drifted.status);
    assertEquals(20, drifted.samplesMs.size());
    assertEquals(Boolean.FALSE, drifted.parity.passed);
    assertEquals(1.0 / 3.0, drifted.parity.relDiff, 1e-6);
    assertEquals("error", error.status);
    assertTrue(error.error, error.error.contains("sha256 mismatch"));
    assertEquals(0, runner.queue().pendingFiles().size());
    write("android_core_ok.json", ok.toJson());
    write("android_core_error.json", error.toJson());
    write("android_core_parity_failed.json", drifted.toJson());

    // Resending a stored run is acknowledged with 200 and not stored twice.
    assertEquals(200, runner.client().postReport(ok.toJson()));
  }

  @Test
  public void offlineQueueFlushesThroughTheBatchEndpoint() throws Exception {
    AggregatorClient client = new AggregatorClient(server, token);
    ReportQueue queue = new ReportQueue(new File(reportOut, "batch-queue"));
    String fresh = sampleJson();
    String stored = sampleJson();
    assertEquals(201, client.postReport(stored)); // e.g. sent before the app crashed
    Map<String, Object> bad = Json.parseObject(sampleJson());
    @SuppressWarnings("unchecked")
    Map<String, Object> timing = (Map<String, Object>) bad.get("timing");
    timing.put("samples_ms", Arrays.asList()); // "ok" without samples: invalid
    for (String json : new String[] {fresh, stored, Json.write(bad)}) {
      queue.enqueue((String) Json.parseObject(json).get("run_id"), json);
    }

    ReportQueue.FlushResult r = queue.flush(client);
    assertEquals(r.toString(), 2, r.sent);
    assertEquals(1, r.alreadyStored);
    assertEquals(1, r.rejected);
    assertEquals(0, r.remaining);
    File rejected = queue.rejectedFiles().get(0);
    assertEquals(bad.get("run_id") + ".json", rejected.getName());
    String reason = ReportQueue.read(new File(rejected.getPath() + ".reason.txt"));
    assertTrue(reason, reason.contains("422") && reason.contains("samples"));
    Map<String, Object> ids = new java.util.LinkedHashMap<String, Object>();
    ids.put("stored", Arrays.asList(Json.parseObject(fresh).get("run_id"), Json.parseObject(stored).get("run_id")));
    ids.put("rejected", Arrays.asList(bad.get("run_id")));
    write("batch_run_ids.json", Json.write(ids));
  }

  @Test
  public void wrongTokenIs401() throws Exception {
    try {
      new AggregatorClient(server, "not-a-token").postReport(sampleJson());
      fail("the server accepted a wrong token");
    } catch (AggregatorClient.HttpStatusException e) {
      assertEquals(401, e.code);
    }
  }

  @Test
  public void okReportWithoutSamplesIs422() throws Exception {
    Map<String, Object> m = Json.parseObject(sampleJson());
    @SuppressWarnings("unchecked")
    Map<String, Object> timing = (Map<String, Object>) m.get("timing");
    timing.put("samples_ms", Arrays.asList());
    try {
      new AggregatorClient(server, token).postReport(Json.write(m));
      fail("the server accepted an ok report with no samples");
    } catch (AggregatorClient.HttpStatusException e) {
      assertEquals(422, e.code);
      assertTrue(e.body, e.body.contains("samples"));
    }
  }

  /** A valid report built by the core without a server round trip. */
  private static String sampleJson() throws Exception {
    BundleManifest m = new AggregatorClient(server, null).fetchManifest(bundle);
    Report r = new Report();
    r.createdAtMs = r.startedAtMs = r.finishedAtMs = System.currentTimeMillis();
    r.device = DeviceInfo.currentJvm("0.1.0");
    r.runtimeName = "litert";
    r.runtimeVersion = "jvm-fake";
    r.accelerator = "jvm-fake";
    r.artifact = m.artifacts.get(0);
    r.samplesMs.add(1.5);
    r.status = "ok";
    return r.toJson();
  }

  private static void write(String name, String json) throws Exception {
    FileOutputStream out = new FileOutputStream(new File(reportOut, name));
    try {
      out.write(json.getBytes("UTF-8"));
    } finally {
      out.close();
    }
  }
}
