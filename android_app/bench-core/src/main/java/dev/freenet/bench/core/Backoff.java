package dev.freenet.bench.core;

/** Exponential backoff between upload retries: initial, doubling, capped. */
public final class Backoff {
  private final long initialMs;
  private final long maxMs;
  private long nextMs;

  public Backoff(long initialMs, long maxMs) {
    if (initialMs <= 0 || maxMs < initialMs) {
      throw new IllegalArgumentException("need 0 < initialMs <= maxMs");
    }
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.nextMs = initialMs;
  }

  public long next() {
    long now = nextMs;
    nextMs = Math.min(maxMs, nextMs * 2);
    return now;
  }

  public void reset() {
    nextMs = initialMs;
  }
}
