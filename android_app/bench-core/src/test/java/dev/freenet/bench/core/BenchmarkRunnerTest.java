package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.After;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class BenchmarkRunnerTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private static final String TOKEN = "test-token";
  private StubAggregator server;
  private File bundleDir;
  private final List<String> messages = new ArrayList<String>();
  private FakeEngine.Factory tflXnn;
  private FakeEngine.Factory tflGpu;
  private FakeEngine.Factory ortCpu;
  private FakeEngine.Factory etXnn;

  @Before
  public void setUp() throws Exception {
    bundleDir = tmp.newFolder("bundle");
    TestBundle.write(
        bundleDir, "b1", new String[][] {{"fake_tfl", "tflite", "2"}, {"fake_onnx", "onnx", "-0.5"}});
    server = new StubAggregator(bundleDir, "b1", TOKEN);
    tflXnn = new FakeEngine.Factory("litert", "xnnpack", Arrays.asList("tflite"), false);
    tflGpu = new FakeEngine.Factory("litert", "gpu", Arrays.asList("tflite"), false);
    ortCpu = new FakeEngine.Factory("onnxruntime", "cpu", Arrays.asList("onnx"), false);
    etXnn = new FakeEngine.Factory("executorch", "xnnpack", Arrays.asList("executorch"), false);
  }

  @After
  public void tearDown() {
    server.close();
  }

  private BenchConfig config() throws Exception {
    BenchConfig c = new BenchConfig();
    c.serverUrl = server.url();
    c.token = TOKEN;
    c.bundle = "b1";
    c.warmupRuns = 3;
    c.timedRuns = 7;
    c.cooldownPollMs = 1000;
    c.maxCooldownMs = 10000;
    c.workDir = tmp.newFolder("work");
    return c;
  }

  private BenchmarkRunner runner(BenchConfig c, ThermalProbe probe, Clock clock, EngineFactory... fs)
      throws Exception {
    return new BenchmarkRunner(
        c, Arrays.asList(fs), DeviceInfo.currentJvm("test"), probe, clock);
  }

  private final BenchmarkRunner.Listener listener =
      new BenchmarkRunner.Listener() {
        @Override
        public void onMessage(String message) {
          messages.add(message);
        }

        @Override
        public void onReport(Report report, ReportQueue.FlushResult upload) {
          messages.add(report.summary() + " / " + upload);
        }
      };

  @Test
  public void everyArtifactTimesMatchingEngineGivesOneOkReport() throws Exception {
    BenchConfig c = config();
    BenchmarkRunner r =
        runner(c, ThermalProbe.UNKNOWN, Clock.SYSTEM, tflXnn, tflGpu, ortCpu, etXnn);
    List<Report> reports = r.run(listener);

    assertEquals(3, reports.size());
    Set<String> pairs = new HashSet<String>();
    for (Report rep : reports) {
      assertTrue(rep.error, rep.ok());
      pairs.add(rep.artifact.id + "@" + rep.runtimeName + "/" + rep.accelerator);
      assertEquals(7, rep.samplesMs.size());
      assertEquals(3, rep.warmupRuns);
      for (double s : rep.samplesMs) {
        assertTrue(s > 0 && !Double.isInfinite(s));
      }
      assertTrue(rep.loadMs > 0);
      assertTrue(rep.firstInferenceMs > 0);
      assertNotNull(rep.parity);
      assertEquals(0.0, rep.parity.maxAbsDiff, 0.0);
      assertEquals(Boolean.TRUE, rep.parity.passed);
      assertEquals(Integer.valueOf(1), rep.placement.get("fake"));
      assertEquals(rep.artifact.sha256, rep.measuredSha256);
    }
    assertEquals(
        new HashSet<String>(
            Arrays.asList("fake_tfl@litert/xnnpack", "fake_tfl@litert/gpu", "fake_onnx@onnxruntime/cpu")),
        pairs);
    assertEquals(0, etXnn.created);
    // Uploaded and acknowledged: the queue is empty and the server holds all three.
    assertEquals(3, server.posted.size());
    assertTrue(r.queue().pendingFiles().isEmpty());
  }

  @Test
  public void reportJsonHasTheProtocolShape() throws Exception {
    BenchmarkRunner r = runner(config(), ThermalProbe.UNKNOWN, Clock.SYSTEM, ortCpu);
    Report rep = r.run(listener).get(0);
    Map<String, Object> m = Json.parseObject(rep.toJson());
    for (String key :
        new String[] {
          "schema_version", "run_id", "created_at", "started_at", "finished_at", "client",
          "device", "runtime", "model", "timing", "thermal", "parity", "status"
        }) {
      assertTrue("missing " + key, m.containsKey(key));
    }
    assertFalse(m.containsKey("error"));
    assertEquals("1", m.get("schema_version"));
    assertTrue(((String) m.get("created_at")).matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"));
    @SuppressWarnings("unchecked")
    Map<String, Object> model = (Map<String, Object>) m.get("model");
    assertEquals(Arrays.asList((Object) 1L, 3L, 8L, 8L), model.get("input_shape"));
    assertEquals("b1", model.get("bundle"));
    @SuppressWarnings("unchecked")
    Map<String, Object> client = (Map<String, Object>) m.get("client");
    assertEquals("android", client.get("platform"));
  }

  @Test
  public void shaMismatchIsRefusedAndReportedNeverRun() throws Exception {
    server.corruptPath = "fake_tfl/model.tflite";
    BenchConfig c = config();
    BenchmarkRunner r = runner(c, ThermalProbe.UNKNOWN, Clock.SYSTEM, tflXnn, tflGpu, ortCpu);
    List<Report> reports = r.run(listener);

    assertEquals(3, reports.size());
    int errors = 0;
    for (Report rep : reports) {
      if (rep.artifact.id.equals("fake_tfl")) {
        errors++;
        assertEquals("error", rep.status);
        assertTrue(rep.error, rep.error.contains("sha256 mismatch"));
        assertTrue(rep.samplesMs.isEmpty());
        assertNull(rep.loadMs);
        Map<String, Object> m = Json.parseObject(rep.toJson());
        assertEquals("error", m.get("status"));
        assertTrue(((String) m.get("error")).contains("sha256 mismatch"));
      } else {
        assertTrue(rep.ok());
      }
    }
    assertEquals(2, errors);
    assertEquals("a corrupt model must never reach an engine", 0, tflXnn.created + tflGpu.created);
    assertFalse(new File(c.workDir, "bundles/b1/fake_tfl/model.tflite").exists());
    assertEquals(3, server.posted.size());
  }

  @Test
  @SuppressWarnings("unchecked")
  public void fileNotMatchingTheManifestIsRefusedEvenWhenTheServerAgrees() throws Exception {
    // The server's copy changed after the export (its header matches the new bytes): only the
    // manifest's hash can catch this.
    Map<String, Object> m = Json.parseObject(new String(StubAggregator.read(new File(bundleDir, "manifest.json")), "UTF-8"));
    Map<String, Object> a = (Map<String, Object>) ((List<?>) m.get("artifacts")).get(1);
    a.put("sha256", Sha256.of("something else".getBytes("UTF-8")));
    TestBundle.put(bundleDir, "manifest.json", Json.write(m).getBytes("UTF-8"));

    List<Report> reports = runner(config(), ThermalProbe.UNKNOWN, Clock.SYSTEM, ortCpu).run(listener);
    assertEquals(1, reports.size());
    assertEquals("error", reports.get(0).status);
    assertTrue(reports.get(0).error, reports.get(0).error.contains("manifest says"));
    assertEquals(0, ortCpu.created);
  }

  @Test
  public void engineFailureIsAnErrorReportKeepingWhatWasMeasured() throws Exception {
    FakeEngine.Factory flaky =
        new FakeEngine.Factory("litert", "gpu", Arrays.asList("tflite"), true);
    Report rep = runner(config(), ThermalProbe.UNKNOWN, Clock.SYSTEM, flaky).run(listener).get(0);
    assertEquals("error", rep.status);
    assertTrue(rep.error, rep.error.contains("simulated delegate failure"));
    assertNotNull(rep.loadMs);
    assertNotNull(rep.firstInferenceMs);
    assertEquals(2, rep.warmupRuns);
    assertTrue(rep.samplesMs.isEmpty());
    assertEquals("FakeEngine (JUnit, no ML runtime)", rep.runtimeInfo.delegate);
  }

  @Test
  public void coolsDownWhileHotThenMeasures() throws Exception {
    TestSupport.SkipClock clock = new TestSupport.SkipClock();
    ThermalProbe probe =
        TestSupport.scripted(TestSupport.hot(), TestSupport.hot(), TestSupport.hot(), TestSupport.cool());
    Report rep = runner(config(), probe, clock, ortCpu).run(listener).get(0);
    assertTrue(rep.error, rep.ok());
    assertEquals(3000, clock.sleptMs);
    assertTrue(rep.cooldownMs >= 3000);
    assertEquals("nominal", rep.thermalBefore.state);
    assertTrue(rep.notes.get("thermal_at_start").startsWith("serious"));
    assertNull(rep.notes.get("cooldown"));
  }

  @Test
  public void givesUpCoolingAfterTheLimitAndSaysSo() throws Exception {
    TestSupport.SkipClock clock = new TestSupport.SkipClock();
    Report rep =
        runner(config(), TestSupport.scripted(TestSupport.hot()), clock, ortCpu).run(listener).get(0);
    assertTrue(rep.ok());
    assertEquals(10000, clock.sleptMs);
    assertTrue(rep.notes.get("cooldown").contains("measured anyway"));
    assertEquals("serious", rep.thermalAfter.state);
  }

  @Test
  public void serverDownKeepsReportsUntilItAcknowledges() throws Exception {
    server.forcedPostStatus = 503;
    BenchmarkRunner r = runner(config(), ThermalProbe.UNKNOWN, Clock.SYSTEM, tflXnn, ortCpu);
    List<Report> reports = r.run(listener);
    assertEquals(2, reports.size());
    assertEquals(2, r.queue().pendingFiles().size());
    assertTrue(server.posted.isEmpty());

    server.forcedPostStatus = 0;
    ReportQueue.FlushResult res = r.queue().flush(r.client());
    assertEquals(2, res.sent);
    assertEquals(0, res.remaining);
    assertEquals(2, server.posted.size());
  }

  @Test
  public void missingManifestThrowsWithTheHttpStatus() throws Exception {
    BenchConfig c = config();
    c.bundle = "no_such_bundle";
    try {
      runner(c, ThermalProbe.UNKNOWN, Clock.SYSTEM, ortCpu).run(listener);
      throw new AssertionError("expected a failure");
    } catch (AggregatorClient.HttpStatusException e) {
      assertEquals(404, e.code);
    }
  }

  @Test
  public void configErrorsSayWhatToSet() throws Exception {
    BenchConfig c = config();
    c.token = " ";
    try {
      runner(c, ThermalProbe.UNKNOWN, Clock.SYSTEM, ortCpu);
      throw new AssertionError("expected a failure");
    } catch (IllegalArgumentException e) {
      assertTrue(e.getMessage().contains("freenet token create"));
    }
  }
}
