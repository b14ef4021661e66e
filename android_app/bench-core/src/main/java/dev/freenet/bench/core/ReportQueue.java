package dev.freenet.bench.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Durable upload queue: every report is written to app storage first and deleted only after
 * the server acknowledged it (HTTP 201 stored, or 200 already stored), so nothing is lost while
 * the server is down or the phone is offline. The queue is sent in batches
 * ({@code POST /api/v1/reports/batch}), falling back to one POST per report for an aggregator
 * without that endpoint.
 *
 * <p>Layout under the queue directory: {@code pending/<run_id>.json} waits for upload;
 * {@code rejected/<run_id>.json} (+ {@code .reason.txt}) holds reports the server refused as
 * invalid (400/413/422), kept for inspection since resending the same bytes cannot succeed.
 * A 401 (bad or revoked token) keeps reports pending: a new token makes them uploadable.
 */
public final class ReportQueue {
  private static final Charset UTF8 = Charset.forName("UTF-8");
  /** Reports per batch request: far below the server's 1000 and its body limit. */
  static final int BATCH_SIZE = 100;
  private static final String TOKEN_REFUSED =
      "the server refused the device token (HTTP 401): create a new one with"
          + " `freenet token create` and enter it in the app";
  private final File pending;
  private final File rejected;

  /** Result of one {@link #flush} pass. */
  public static final class FlushResult {
    public int sent;
    public int alreadyStored;
    public int rejected;
    public int remaining;
    /** Why the pass stopped early (server down, bad token), or null. */
    public String stoppedBecause;

    @Override
    public String toString() {
      return "sent " + sent + " (already stored " + alreadyStored + "), rejected " + rejected
          + ", pending " + remaining + (stoppedBecause == null ? "" : " - " + stoppedBecause);
    }
  }

  public ReportQueue(File dir) throws IOException {
    this.pending = new File(dir, "pending");
    this.rejected = new File(dir, "rejected");
    mkdirs(pending);
    mkdirs(rejected);
  }

  /** Writes the report atomically (temp file + rename) so a crash never leaves half a file. */
  public File enqueue(Report report) throws IOException {
    return enqueue(report.runId, report.toJson());
  }

  public File enqueue(String runId, String json) throws IOException {
    if (!runId.matches("[0-9a-fA-F-]{36}")) {
      throw new IllegalArgumentException("run id is not a UUID: " + runId);
    }
    File tmp = new File(pending, runId + ".json.tmp");
    FileOutputStream out = new FileOutputStream(tmp);
    try {
      out.write(json.getBytes(UTF8));
      out.getFD().sync();
    } finally {
      out.close();
    }
    File dest = new File(pending, runId + ".json");
    if (!tmp.renameTo(dest)) {
      throw new IOException("cannot move " + tmp + " to " + dest);
    }
    return dest;
  }

  public List<File> pendingFiles() {
    return list(pending);
  }

  public List<File> rejectedFiles() {
    return list(rejected);
  }

  /**
   * Uploads every pending report, oldest name first, through {@code POST /api/v1/reports/batch}
   * (one request per {@link #BATCH_SIZE} reports): a report answered 201/200 is deleted, one
   * answered 422 is set aside with the reason, any other answer keeps it pending. Stops at the
   * first transient failure of a whole request (network error, 5xx, 401) because the next ones
   * would fail the same way.
   */
  public FlushResult flush(AggregatorClient client) {
    // One lock for all queues: the app's uploader thread and the runner may flush the same
    // directory at once, and a report must not be posted twice in parallel.
    synchronized (ReportQueue.class) {
      return flushLocked(client);
    }
  }

  private FlushResult flushLocked(AggregatorClient client) {
    FlushResult r = new FlushResult();
    List<File> files = pendingFiles();
    for (int start = 0; start < files.size() && r.stoppedBecause == null; start += BATCH_SIZE) {
      List<File> chunk = files.subList(start, Math.min(files.size(), start + BATCH_SIZE));
      List<String> jsons = new ArrayList<String>();
      try {
        for (File f : chunk) {
          jsons.add(read(f));
        }
      } catch (IOException e) {
        r.stoppedBecause = "cannot read a pending report: " + e.getMessage();
        break;
      }
      List<AggregatorClient.BatchItem> items;
      try {
        items = client.postBatch(jsons);
      } catch (AggregatorClient.HttpStatusException e) {
        if (e.code == 404 || e.code == 405 || e.code == 413) {
          // An aggregator without the batch endpoint, or a batch over its size limit.
          flushOneByOne(client, chunk, r);
          continue;
        }
        r.stoppedBecause = e.code == 401 ? TOKEN_REFUSED : e.getMessage();
        break;
      } catch (IOException e) {
        r.stoppedBecause = "server unreachable: " + e;
        break;
      }
      int kept = 0;
      for (int i = 0; i < chunk.size(); i++) {
        AggregatorClient.BatchItem item = items.get(i);
        File f = chunk.get(i);
        if (item.status == 201 || item.status == 200) {
          acknowledged(r, f, item.status);
        } else if (item.status == 422) {
          moveToRejected(f, "HTTP 422: " + item.detail);
          r.rejected++;
        } else {
          kept++; // anything else may be transient: the report stays pending
        }
      }
      if (kept > 0) {
        r.stoppedBecause = "the server did not store " + kept + " report(s) of the batch; kept for the next flush";
      }
    }
    r.remaining = pendingFiles().size();
    return r;
  }

  /** The single-report endpoint, one POST per report (aggregators before the batch endpoint). */
  private void flushOneByOne(AggregatorClient client, List<File> files, FlushResult r) {
    for (File f : files) {
      try {
        acknowledged(r, f, client.postReport(read(f)));
      } catch (AggregatorClient.HttpStatusException e) {
        if (e.code == 400 || e.code == 413 || e.code == 422) {
          moveToRejected(f, e.getMessage());
          r.rejected++;
          continue;
        }
        r.stoppedBecause = e.code == 401 ? TOKEN_REFUSED : e.getMessage();
        return;
      } catch (IOException e) {
        r.stoppedBecause = "server unreachable: " + e;
        return;
      }
    }
  }

  private static void acknowledged(FlushResult r, File f, int code) {
    if (code == 200) {
      r.alreadyStored++;
    }
    r.sent++;
    if (!f.delete() && r.stoppedBecause == null) {
      r.stoppedBecause = "cannot delete uploaded " + f;
    }
  }

  /**
   * Flushes until the queue is empty or {@code maxPasses} passes were made, sleeping with
   * exponential backoff between passes. The app runs this on a background thread.
   */
  public FlushResult flushWithRetry(
      AggregatorClient client, Backoff backoff, Clock clock, int maxPasses)
      throws InterruptedException {
    FlushResult last = flush(client);
    int passes = 1;
    while (last.remaining > 0 && last.stoppedBecause != null && passes < maxPasses) {
      clock.sleep(backoff.next());
      last = flush(client);
      passes++;
    }
    if (last.remaining == 0) {
      backoff.reset();
    }
    return last;
  }

  private void moveToRejected(File f, String reason) {
    File dest = new File(rejected, f.getName());
    if (!f.renameTo(dest)) {
      return; // stays pending; the next flush retries and rejects again
    }
    try {
      FileOutputStream out = new FileOutputStream(new File(rejected, f.getName() + ".reason.txt"));
      try {
        out.write(reason.getBytes(UTF8));
      } finally {
        out.close();
      }
    } catch (IOException ignored) {
      // The report itself is kept; only the reason text is lost.
    }
  }

  private static List<File> list(File dir) {
    File[] files = dir.listFiles();
    List<File> out = new ArrayList<File>();
    if (files == null) {
      return out;
    }
    Arrays.sort(files);
    for (File f : files) {
      if (f.getName().endsWith(".json")) {
        out.add(f);
      }
    }
    return out;
  }

  /** A whole UTF-8 file; shared with the engines (e.g. ONNX Runtime's profile trace). */
  public static String read(File f) throws IOException {
    InputStream in = new FileInputStream(f);
    try {
      ByteArrayOutputStream buf = new ByteArrayOutputStream();
      byte[] chunk = new byte[8192];
      int n;
      while ((n = in.read(chunk)) > 0) {
        buf.write(chunk, 0, n);
      }
      return new String(buf.toByteArray(), UTF8);
    } finally {
      in.close();
    }
  }

  private static void mkdirs(File d) throws IOException {
    if (!d.isDirectory() && !d.mkdirs()) {
      throw new IOException("cannot create " + d);
    }
  }
}
