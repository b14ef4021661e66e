package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;

import java.io.File;
import java.net.ServerSocket;
import java.util.Arrays;
import java.util.UUID;
import org.junit.After;
import org.junit.Before;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ReportQueueTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();
  private StubAggregator server;
  private ReportQueue queue;

  @Before
  public void setUp() throws Exception {
    File bundle = tmp.newFolder("bundle");
    TestBundle.write(bundle, "b1", new String[][] {{"x", "onnx", "1"}});
    server = new StubAggregator(bundle, "b1", "tok");
    queue = new ReportQueue(tmp.newFolder("q"));
  }

  @After
  public void tearDown() {
    server.close();
  }

  private String enqueue() throws Exception {
    String id = UUID.randomUUID().toString();
    queue.enqueue(id, "{\"run_id\":\"" + id + "\"}");
    return id;
  }

  @Test
  public void acknowledgedReportsLeaveTheQueue() throws Exception {
    enqueue();
    enqueue();
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(2, r.sent);
    assertEquals(0, r.remaining);
    assertEquals(2, server.posted.size());
  }

  @Test
  public void alreadyStoredCountsAsAcknowledged() throws Exception {
    String id = enqueue();
    AggregatorClient c = new AggregatorClient(server.url(), "tok");
    queue.flush(c);
    queue.enqueue(id, "{\"run_id\":\"" + id + "\"}"); // e.g. the app crashed before deleting
    ReportQueue.FlushResult r = queue.flush(c);
    assertEquals(1, r.alreadyStored);
    assertEquals(0, r.remaining);
    assertEquals(1, server.posted.size());
  }

  @Test
  public void unreachableServerKeepsEverything() throws Exception {
    enqueue();
    int port;
    ServerSocket s = new ServerSocket(0);
    port = s.getLocalPort();
    s.close(); // nothing listens there now
    ReportQueue.FlushResult r =
        queue.flush(new AggregatorClient("http://127.0.0.1:" + port, "tok").withTimeouts(2000, 2000));
    assertEquals(0, r.sent);
    assertEquals(1, r.remaining);
    assertTrue(r.stoppedBecause, r.stoppedBecause.contains("unreachable"));
  }

  @Test
  public void badTokenKeepsReportsAndSaysHowToFix() throws Exception {
    enqueue();
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "wrong"));
    assertEquals(1, r.remaining);
    assertTrue(r.stoppedBecause.contains("freenet token create"));
  }

  @Test
  public void invalidReportsAreSetAsideWithTheReason() throws Exception {
    enqueue();
    server.forcedPostStatus = 422;
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(1, r.rejected);
    assertEquals(0, r.remaining);
    assertEquals(1, queue.rejectedFiles().size());
    File reason = new File(queue.rejectedFiles().get(0).getPath() + ".reason.txt");
    assertTrue(ReportQueue.read(reason).contains("422"));
  }

  @Test
  public void retriesWithBackoffUntilTheServerAcknowledges() throws Exception {
    enqueue();
    server.failNextPosts = 3;
    TestSupport.SkipClock clock = new TestSupport.SkipClock();
    ReportQueue.FlushResult r =
        queue.flushWithRetry(
            new AggregatorClient(server.url(), "tok"), new Backoff(1000, 3000), clock, 10);
    assertEquals(0, r.remaining);
    assertEquals(1000 + 2000 + 3000, clock.sleptMs);
    assertEquals(1, server.posted.size());
  }

  @Test
  public void oneBatchDeletesStoredKeepsFailedAndSetsAsideInvalidReports() throws Exception {
    String stored = enqueue();
    String invalid = enqueue();
    String failed = enqueue();
    server.itemStatus.put(invalid, 422);
    server.itemStatus.put(failed, 500);
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(Arrays.asList(3), server.batchSizes);
    assertEquals(1, r.sent);
    assertEquals(1, r.rejected);
    assertEquals(1, r.remaining);
    assertEquals(failed + ".json", queue.pendingFiles().get(0).getName());
    assertEquals(invalid + ".json", queue.rejectedFiles().get(0).getName());
    assertTrue(server.runIds.contains(stored));
    assertNotNull(r.stoppedBecause); // so that flushWithRetry tries the kept one again

    server.itemStatus.clear();
    r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(0, r.remaining);
    assertEquals(Arrays.asList(3, 1), server.batchSizes);
  }

  @Test
  public void largeQueuesGoInSeveralBatches() throws Exception {
    for (int i = 0; i < ReportQueue.BATCH_SIZE + 5; i++) {
      enqueue();
    }
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(0, r.remaining);
    assertEquals(Arrays.asList(ReportQueue.BATCH_SIZE, 5), server.batchSizes);
  }

  @Test
  public void anAggregatorWithoutTheBatchEndpointGetsOnePostPerReport() throws Exception {
    enqueue();
    enqueue();
    server.noBatchEndpoint = true;
    ReportQueue.FlushResult r = queue.flush(new AggregatorClient(server.url(), "tok"));
    assertEquals(2, r.sent);
    assertEquals(0, r.remaining);
    assertTrue(server.batchSizes.isEmpty());
  }

  @Test
  public void enqueueIsAtomicAndNamedByRunId() throws Exception {
    String id = enqueue();
    assertEquals(1, queue.pendingFiles().size());
    assertEquals(id + ".json", queue.pendingFiles().get(0).getName());
    assertNotNull(ReportQueue.read(queue.pendingFiles().get(0)));
    File[] leftovers = queue.pendingFiles().get(0).getParentFile().listFiles();
    assertEquals(1, leftovers.length);
  }
}
