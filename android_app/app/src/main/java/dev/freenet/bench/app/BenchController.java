package dev.freenet.bench.app;

import android.content.Context;
import android.os.Handler;
import android.os.Looper;
import android.util.Log;
import dev.freenet.bench.core.AggregatorClient;
import dev.freenet.bench.core.Backoff;
import dev.freenet.bench.core.BenchConfig;
import dev.freenet.bench.core.BenchmarkRunner;
import dev.freenet.bench.core.Clock;
import dev.freenet.bench.core.EngineFactory;
import dev.freenet.bench.core.Report;
import dev.freenet.bench.core.ReportQueue;
import java.io.File;
import java.util.ArrayList;
import java.util.List;

/**
 * Process-wide owner of the benchmark thread, the upload retry thread and the results shown on
 * screen, so a rotation or a second {@code am start} does not restart or lose a run. All
 * listener calls happen on the main thread.
 */
final class BenchController {
  static final String TAG = "FreeNetBench";

  interface Listener {
    void onStateChanged();
  }

  private static BenchController instance;

  static synchronized BenchController get(Context ctx) {
    if (instance == null) {
      instance = new BenchController(ctx.getApplicationContext());
    }
    return instance;
  }

  private final Context app;
  private final Handler main = new Handler(Looper.getMainLooper());
  private final List<String> results = new ArrayList<String>();
  private Listener listener;
  private Thread benchThread;
  private Thread uploadThread;
  private String status = "";
  private int pending;

  private BenchController(Context app) {
    this.app = app;
  }

  File workDir() {
    return new File(app.getFilesDir(), "bench");
  }

  synchronized void attach(Listener l) {
    listener = l;
  }

  synchronized void detach(Listener l) {
    if (listener == l) {
      listener = null;
    }
  }

  synchronized boolean running() {
    return benchThread != null && benchThread.isAlive();
  }

  synchronized String status() {
    return status;
  }

  synchronized List<String> results() {
    return new ArrayList<String>(results);
  }

  synchronized int pending() {
    return pending;
  }

  /** Starts a run unless one is going; configuration errors are shown, not thrown. */
  synchronized void start(final Settings settings) {
    if (running()) {
      setStatus("a run is already going");
      return;
    }
    results.clear();
    benchThread =
        new Thread(
            new Runnable() {
              @Override
              public void run() {
                runBenchmark(settings);
              }
            },
            "freenet-bench");
    benchThread.start();
    notifyChanged();
  }

  synchronized void stop() {
    if (running()) {
      benchThread.interrupt();
      setStatus("stopping after the current inference...");
    }
  }

  private void runBenchmark(Settings settings) {
    try {
      BenchConfig cfg = settings.toConfig(workDir());
      if (cfg.bundle == null || cfg.bundle.trim().isEmpty()) {
        cfg.bundle = onlyBundle(cfg);
      }
      List<String> problems = new ArrayList<String>();
      List<EngineFactory> engines = EngineRegistry.load(new File(app.getCacheDir(), "engines"), problems);
      for (String p : problems) {
        addResult("note: " + p);
      }
      BenchmarkRunner runner =
          new BenchmarkRunner(
              cfg,
              engines,
              AndroidDeviceInfo.create(app),
              new AndroidThermalProbe(app),
              Clock.SYSTEM);
      List<Report> reports =
          runner.run(
              new BenchmarkRunner.Listener() {
                @Override
                public void onMessage(String message) {
                  Log.i(TAG, message);
                  setStatus(message);
                }

                @Override
                public void onReport(Report report, ReportQueue.FlushResult upload) {
                  Log.i(TAG, report.summary() + " / upload: " + upload);
                  addResult(report.summary());
                  setPending(upload.remaining);
                }
              });
      int failed = 0;
      for (Report r : reports) {
        if (!r.ok()) {
          failed++;
        }
      }
      setStatus("done: " + reports.size() + " reports (" + failed + " errors)");
    } catch (InterruptedException e) {
      setStatus("stopped");
    } catch (Exception e) {
      Log.e(TAG, "benchmark failed", e);
      setStatus("failed: " + e.getMessage());
    } finally {
      startUploader(settings);
      notifyChanged();
    }
  }

  private static String onlyBundle(BenchConfig cfg) throws Exception {
    List<String> bundles = new AggregatorClient(cfg.serverUrl, null).listBundles();
    if (bundles.size() != 1) {
      throw new IllegalArgumentException(
          "set the bundle name: the server offers " + bundles + " (start it with --bundles DIR)");
    }
    return bundles.get(0);
  }

  /**
   * Retries pending uploads with exponential backoff (2 s doubling to 5 min) for as long as
   * the process lives; the queue on disk survives restarts and is retried on the next start.
   */
  synchronized void startUploader(final Settings settings) {
    if (uploadThread != null && uploadThread.isAlive()) {
      return;
    }
    uploadThread =
        new Thread(
            new Runnable() {
              @Override
              public void run() {
                try {
                  ReportQueue queue = new ReportQueue(new File(workDir(), "reports"));
                  setPending(queue.pendingFiles().size());
                  if (queue.pendingFiles().isEmpty()) {
                    return;
                  }
                  AggregatorClient client =
                      new AggregatorClient(settings.server.trim(), settings.token.trim());
                  ReportQueue.FlushResult r =
                      queue.flushWithRetry(
                          client, new Backoff(2000, 5 * 60 * 1000), Clock.SYSTEM, Integer.MAX_VALUE);
                  setPending(r.remaining);
                  Log.i(TAG, "uploads: " + r);
                } catch (InterruptedException e) {
                  Log.i(TAG, "upload retries stopped");
                } catch (Exception e) {
                  Log.e(TAG, "upload failed", e);
                  setStatus("upload failed: " + e.getMessage());
                }
              }
            },
            "freenet-upload");
    uploadThread.start();
  }

  /** Restarts the uploader with new settings (e.g. after a new token was entered). */
  synchronized void retryUploads(Settings settings) {
    if (uploadThread != null && uploadThread.isAlive()) {
      uploadThread.interrupt();
    }
    uploadThread = null;
    startUploader(settings);
  }

  private void addResult(String line) {
    synchronized (this) {
      results.add(line);
    }
    notifyChanged();
  }

  private void setStatus(String s) {
    synchronized (this) {
      status = s;
    }
    notifyChanged();
  }

  private void setPending(int n) {
    synchronized (this) {
      pending = n;
    }
    notifyChanged();
  }

  private void notifyChanged() {
    main.post(
        new Runnable() {
          @Override
          public void run() {
            Listener l;
            synchronized (BenchController.this) {
              l = listener;
            }
            if (l != null) {
              l.onStateChanged();
            }
          }
        });
  }
}
