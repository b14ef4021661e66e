package dev.freenet.bench.core;

import java.util.LinkedHashMap;
import java.util.Map;

/** The report's {@code device} and {@code client} facts, filled by the platform layer. */
public final class DeviceInfo {
  public final String manufacturer;
  public final String model;
  public final String soc;
  public final String os;
  public final String osVersion;
  public final Long memoryBytes; // nullable
  public final String app;
  public final String appVersion;
  /**
   * An emulator (Android emulator, JVM test): every accelerator is then emulated and no report
   * from it may count as a speed result, so the runner marks its reports {@code emulated}.
   */
  public boolean emulator;

  public DeviceInfo(
      String manufacturer,
      String model,
      String soc,
      String os,
      String osVersion,
      Long memoryBytes,
      String app,
      String appVersion) {
    this.manufacturer = nonEmpty(manufacturer);
    this.model = nonEmpty(model);
    this.soc = nonEmpty(soc);
    this.os = nonEmpty(os);
    this.osVersion = nonEmpty(osVersion);
    this.memoryBytes = memoryBytes;
    this.app = nonEmpty(app);
    this.appVersion = nonEmpty(appVersion);
  }

  // The schema requires non-empty names; some devices leave Build fields blank.
  private static String nonEmpty(String s) {
    return s == null || s.trim().isEmpty() ? "unknown" : s.trim();
  }

  /** The JVM this code runs on, for tests on Linux (client platform stays "android"). */
  public static DeviceInfo currentJvm(String appVersion) {
    DeviceInfo d = new DeviceInfo(
        System.getProperty("java.vendor"),
        "JVM " + System.getProperty("java.version") + " (bench-core test, not a phone)",
        System.getProperty("os.arch"),
        System.getProperty("os.name").toLowerCase(),
        System.getProperty("os.version"),
        null, // the JVM heap limit is not the machine's memory; leave it unknown
        "freenet-bench-android",
        appVersion);
    d.emulator = true;
    return d;
  }

  Map<String, Object> deviceJson() {
    Map<String, Object> m = new LinkedHashMap<String, Object>();
    m.put("manufacturer", manufacturer);
    m.put("model", model);
    m.put("soc", soc);
    m.put("os", os);
    m.put("os_version", osVersion);
    if (memoryBytes != null) {
      m.put("memory_bytes", memoryBytes);
    }
    return m;
  }

  Map<String, Object> clientJson() {
    Map<String, Object> m = new LinkedHashMap<String, Object>();
    m.put("app", app);
    m.put("platform", "android");
    m.put("app_version", appVersion);
    return m;
  }
}
