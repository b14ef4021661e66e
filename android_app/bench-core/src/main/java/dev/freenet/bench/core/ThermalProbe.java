package dev.freenet.bench.core;

/**
 * Reads the device's thermal state. The Android app implements it with PowerManager's thermal
 * status (API 29+) or the battery temperature; tests use a scripted probe.
 */
public interface ThermalProbe {
  Reading read();

  /** One reading: either a state name or a temperature in degrees Celsius. */
  final class Reading {
    /** "nominal" | "fair" | "serious" | "critical" | "unknown", or null when a temperature. */
    public final String state;
    /** Degrees Celsius, or null when a state. */
    public final Double celsius;
    /** True when the device is too hot to start a timed run (the runner waits). */
    public final boolean hot;
    /** What the platform said, verbatim (kept in the report's notes). */
    public final String raw;

    private Reading(String state, Double celsius, boolean hot, String raw) {
      this.state = state;
      this.celsius = celsius;
      this.hot = hot;
      this.raw = raw;
    }

    public static Reading state(String state, boolean hot, String raw) {
      if (!("nominal".equals(state)
          || "fair".equals(state)
          || "serious".equals(state)
          || "critical".equals(state)
          || "unknown".equals(state))) {
        throw new IllegalArgumentException("unknown thermal state " + state);
      }
      return new Reading(state, null, hot, raw);
    }

    public static Reading celsius(double c, boolean hot, String raw) {
      return new Reading(null, c, hot, raw);
    }

    public static Reading unknown(String raw) {
      return new Reading("unknown", null, false, raw);
    }

    /** The report's JSON value: the state string or the temperature number. */
    public Object jsonValue() {
      return state != null ? state : celsius;
    }

    @Override
    public String toString() {
      return state != null ? state : String.format("%.1f C", celsius);
    }
  }

  /** For platforms that cannot tell: always "unknown", never hot. */
  ThermalProbe UNKNOWN =
      new ThermalProbe() {
        @Override
        public Reading read() {
          return Reading.unknown("no thermal source");
        }
      };
}
