package dev.freenet.bench.app;

import android.content.Context;
import android.content.Intent;
import android.content.IntentFilter;
import android.os.BatteryManager;
import android.os.Build;
import android.os.PowerManager;
import dev.freenet.bench.core.ThermalProbe;
import java.lang.reflect.Method;

/**
 * Thermal state from {@code PowerManager.getCurrentThermalStatus()} (API 29+), otherwise the
 * battery temperature, which is the only thermal signal older Android versions give apps.
 */
final class AndroidThermalProbe implements ThermalProbe {
  /** Battery temperature above which a run waits (older devices without thermal status). */
  static final double HOT_BATTERY_CELSIUS = 40.0;

  private static final String[] STATUS_NAMES = {
    "THERMAL_STATUS_NONE",
    "THERMAL_STATUS_LIGHT",
    "THERMAL_STATUS_MODERATE",
    "THERMAL_STATUS_SEVERE",
    "THERMAL_STATUS_CRITICAL",
    "THERMAL_STATUS_EMERGENCY",
    "THERMAL_STATUS_SHUTDOWN",
  };

  private final Context ctx;
  private final Method thermalStatus; // null below API 29
  private final PowerManager power;

  AndroidThermalProbe(Context ctx) {
    this.ctx = ctx.getApplicationContext();
    this.power = (PowerManager) ctx.getSystemService(Context.POWER_SERVICE);
    Method m = null;
    if (Build.VERSION.SDK_INT >= 29 && power != null) {
      try {
        // Reflection: the method is API 29 and this code also compiles against API 23.
        m = PowerManager.class.getMethod("getCurrentThermalStatus");
      } catch (NoSuchMethodException ignored) {
        m = null;
      }
    }
    this.thermalStatus = m;
  }

  @Override
  public Reading read() {
    if (thermalStatus != null) {
      try {
        int status = (Integer) thermalStatus.invoke(power);
        return fromStatus(status);
      } catch (Exception e) {
        // Fall back to the battery below.
      }
    }
    Intent battery = ctx.registerReceiver(null, new IntentFilter(Intent.ACTION_BATTERY_CHANGED));
    if (battery != null) {
      int tenths = battery.getIntExtra(BatteryManager.EXTRA_TEMPERATURE, Integer.MIN_VALUE);
      if (tenths != Integer.MIN_VALUE) {
        double c = tenths / 10.0;
        return Reading.celsius(c, c >= HOT_BATTERY_CELSIUS, "battery " + c + " C");
      }
    }
    return Reading.unknown("no thermal status and no battery temperature");
  }

  /**
   * Maps Android's seven levels onto the report's four (the iOS ProcessInfo names). Any level
   * above NONE means the platform already throttles, so the runner waits before timing.
   */
  static Reading fromStatus(int status) {
    String raw = status >= 0 && status < STATUS_NAMES.length ? STATUS_NAMES[status] : "status " + status;
    String state;
    if (status <= 0) {
      state = "nominal";
    } else if (status == 1) {
      state = "fair";
    } else if (status <= 3) {
      state = "serious";
    } else {
      state = "critical";
    }
    return Reading.state(state, status > 0, raw);
  }
}
