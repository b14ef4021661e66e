package dev.freenet.bench.app;

import android.app.ActivityManager;
import android.content.Context;
import android.content.pm.PackageInfo;
import android.content.pm.PackageManager;
import android.os.Build;
import dev.freenet.bench.core.DeviceInfo;

/** Fills the report's device/client objects from {@link Build} and the package info. */
final class AndroidDeviceInfo {
  private AndroidDeviceInfo() {}

  static DeviceInfo create(Context ctx) {
    ActivityManager am = (ActivityManager) ctx.getSystemService(Context.ACTIVITY_SERVICE);
    ActivityManager.MemoryInfo mem = new ActivityManager.MemoryInfo();
    Long total = null;
    if (am != null) {
      am.getMemoryInfo(mem);
      total = mem.totalMem;
    }
    String version = "unknown";
    try {
      PackageInfo pi = ctx.getPackageManager().getPackageInfo(ctx.getPackageName(), 0);
      version = pi.versionName + " (" + pi.versionCode + ")";
    } catch (PackageManager.NameNotFoundException ignored) {
      // Our own package always exists; keep "unknown" rather than crash.
    }
    DeviceInfo info =
        new DeviceInfo(
            Build.MANUFACTURER,
            Build.MODEL,
            soc(),
            "android",
            Build.VERSION.RELEASE + " (API " + Build.VERSION.SDK_INT + ")",
            total,
            "freenet-bench-android",
            version);
    info.emulator = isEmulator();
    return info;
  }

  /** The Android emulator's GPU is SwiftShader/host-backed and its CPU a VM: never a speed result. */
  static boolean isEmulator() {
    String hw = Build.HARDWARE == null ? "" : Build.HARDWARE;
    String fp = Build.FINGERPRINT == null ? "" : Build.FINGERPRINT;
    return hw.equals("ranchu")
        || hw.equals("goldfish")
        || fp.startsWith("generic")
        || fp.contains("emulator")
        || Build.PRODUCT != null && Build.PRODUCT.startsWith("sdk_gphone");
  }

  /**
   * Build.SOC_MANUFACTURER/SOC_MODEL exist from API 31; read by reflection because this code is
   * also compiled against API 23's android.jar (tools/build_shell_apk.sh).
   */
  static String soc() {
    if (Build.VERSION.SDK_INT >= 31) {
      try {
        String maker = (String) Build.class.getField("SOC_MANUFACTURER").get(null);
        String model = (String) Build.class.getField("SOC_MODEL").get(null);
        if (model != null && !model.isEmpty() && !"unknown".equalsIgnoreCase(model)) {
          return (maker == null || maker.isEmpty() ? "" : maker + " ") + model;
        }
      } catch (Exception ignored) {
        // Fall through to the board name.
      }
    }
    return Build.HARDWARE + " (" + Build.BOARD + ")";
  }
}
