package dev.freenet.bench.core;

import java.io.File;

/**
 * What to measure and where to send it: the aggregator URL and device token (from the settings
 * screen or {@code adb shell am start ... --es server URL --es token T}), the bundle name, the
 * run counts and the cool-down policy.
 */
public final class BenchConfig {
  public String serverUrl;
  public String token;
  public String bundle;
  /** Untimed runs after the first inference, so caches/JIT/GPU clocks settle. */
  public int warmupRuns = 10;
  /** Timed runs; every one is kept as a raw sample. */
  public int timedRuns = 50;
  /** How often the thermal state is polled while cooling down. */
  public long cooldownPollMs = 5000;
  /** Give up waiting after this long and measure anyway (noted in the report). */
  public long maxCooldownMs = 5 * 60 * 1000;
  /** Only artifacts whose id contains this text (null or empty: all). */
  public String artifactFilter;
  /** Downloads and the upload queue live here (the app's private files dir). */
  public File workDir;

  /** Throws IllegalArgumentException with a message a user can act on. */
  public void validate() {
    if (serverUrl == null || !(serverUrl.startsWith("http://") || serverUrl.startsWith("https://"))) {
      throw new IllegalArgumentException(
          "set the aggregator URL (e.g. http://127.0.0.1:8787 with `adb reverse tcp:8787"
              + " tcp:8787`), got: " + serverUrl);
    }
    if (token == null || token.trim().isEmpty()) {
      throw new IllegalArgumentException(
          "set the device token printed by `freenet token create --device NAME`");
    }
    if (bundle == null || bundle.trim().isEmpty()) {
      throw new IllegalArgumentException("set the bundle name served by `freenet serve --bundles`");
    }
    if (warmupRuns < 0 || timedRuns < 1) {
      throw new IllegalArgumentException("need warm-up runs >= 0 and timed runs >= 1");
    }
    if (workDir == null) {
      throw new IllegalArgumentException("no work directory for downloads and the report queue");
    }
  }
}
