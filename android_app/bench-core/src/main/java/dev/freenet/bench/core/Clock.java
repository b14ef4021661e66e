package dev.freenet.bench.core;

/**
 * Time source for the runner: a monotonic clock for latencies, wall time for report timestamps,
 * and sleeping for cool-down. Tests substitute a clock whose sleep only advances time.
 */
public interface Clock {
  long nanoTime();

  long currentTimeMillis();

  void sleep(long ms) throws InterruptedException;

  Clock SYSTEM =
      new Clock() {
        @Override
        public long nanoTime() {
          return System.nanoTime();
        }

        @Override
        public long currentTimeMillis() {
          return System.currentTimeMillis();
        }

        @Override
        public void sleep(long ms) throws InterruptedException {
          Thread.sleep(ms);
        }
      };
}
