package dev.freenet.bench.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/** Scripted thermal probes and a clock whose sleep advances time instantly. */
final class TestSupport {
  private TestSupport() {}

  /** Returns the given readings in order, then repeats the last one. */
  static ThermalProbe scripted(final ThermalProbe.Reading... readings) {
    final List<ThermalProbe.Reading> list = new ArrayList<ThermalProbe.Reading>(Arrays.asList(readings));
    return new ThermalProbe() {
      int i;

      @Override
      public synchronized Reading read() {
        Reading r = list.get(Math.min(i, list.size() - 1));
        i++;
        return r;
      }
    };
  }

  static ThermalProbe.Reading hot() {
    return ThermalProbe.Reading.state("serious", true, "THERMAL_STATUS_SEVERE");
  }

  static ThermalProbe.Reading cool() {
    return ThermalProbe.Reading.state("nominal", false, "THERMAL_STATUS_NONE");
  }

  /** Real monotonic time plus whatever was "slept", so latencies stay real and waits are free. */
  static final class SkipClock implements Clock {
    long skippedNs;
    long sleptMs;

    @Override
    public long nanoTime() {
      return System.nanoTime() + skippedNs;
    }

    @Override
    public long currentTimeMillis() {
      return System.currentTimeMillis() + skippedNs / 1000000L;
    }

    @Override
    public void sleep(long ms) {
      sleptMs += ms;
      skippedNs += ms * 1000000L;
    }
  }
}
