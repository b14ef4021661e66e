package dev.freenet.bench.core;

import java.text.SimpleDateFormat;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TimeZone;
import java.util.UUID;

/**
 * One benchmark report as the protocol defines it (device_bench/schema/report.schema.json):
 * filled step by step by the runner and serialized with {@link #toJson()}.
 *
 * <p>A report is always complete enough to be valid: a failure at any step still yields a
 * report with status "error", the reason, and whatever was measured before the failure.
 */
public final class Report {
  public static final String SCHEMA_VERSION = "1";

  public final String runId = UUID.randomUUID().toString();
  public long createdAtMs;
  public long startedAtMs;
  public long finishedAtMs;
  public DeviceInfo device;

  public String runtimeName;
  public String runtimeVersion;
  public String accelerator;
  public RuntimeInfo runtimeInfo; // nullable until the engine loaded

  public BundleManifest.Artifact artifact;
  public String bundle;
  public String measuredSha256; // sha256 of the file actually measured

  public Double loadMs;
  public Double firstInferenceMs;
  public int warmupRuns;
  public final List<Double> samplesMs = new ArrayList<Double>();
  public Double cooldownMs;

  public Map<String, Integer> placement;
  public ThermalProbe.Reading thermalBefore;
  public ThermalProbe.Reading thermalAfter;
  public Parity parity; // null until the reference output was compared

  public String status = "error";
  public String error = "the run did not finish";
  public final Map<String, String> notes = new LinkedHashMap<String, String>();

  public boolean ok() {
    return "ok".equals(status);
  }

  /** Measured (samples kept), whether or not the output matched the reference. */
  public boolean measured() {
    return ok() || "parity_failed".equals(status);
  }

  public Map<String, Object> toMap() {
    Map<String, Object> m = new LinkedHashMap<String, Object>();
    m.put("schema_version", SCHEMA_VERSION);
    m.put("run_id", runId);
    m.put("created_at", iso(createdAtMs));
    m.put("started_at", iso(startedAtMs));
    m.put("finished_at", iso(Math.max(finishedAtMs, startedAtMs)));
    m.put("client", device.clientJson());
    m.put("device", device.deviceJson());

    Map<String, Object> rt = new LinkedHashMap<String, Object>();
    rt.put("name", runtimeName);
    rt.put("version", runtimeVersion);
    rt.put("accelerator", accelerator);
    if (runtimeInfo != null && runtimeInfo.delegate != null) {
      rt.put("delegate", runtimeInfo.delegate);
    }
    if (runtimeInfo != null && runtimeInfo.threads != null) {
      rt.put("threads", runtimeInfo.threads);
    }
    rt.put("emulated", device.emulator || (runtimeInfo != null && runtimeInfo.emulated));
    m.put("runtime", rt);

    Map<String, Object> model = new LinkedHashMap<String, Object>();
    model.put("name", artifact.model);
    if (artifact.modelFamily != null) {
      model.put("family", artifact.modelFamily);
    }
    model.put("artifact_id", artifact.id);
    model.put("format", artifact.format);
    model.put("precision", artifact.precision);
    model.put("sha256", measuredSha256 != null ? measuredSha256 : artifact.sha256);
    List<Object> shape = new ArrayList<Object>();
    for (long d : artifact.inputs.get(0).shape) {
      shape.add(d);
    }
    model.put("input_shape", shape);
    if (bundle != null) {
      model.put("bundle", bundle);
    }
    if (artifact.macs != null) {
      model.put("macs", artifact.macs);
    }
    if (artifact.params != null) {
      model.put("params", artifact.params);
    }
    m.put("model", model);

    Map<String, Object> timing = new LinkedHashMap<String, Object>();
    timing.put("load_ms", loadMs);
    timing.put("first_inference_ms", firstInferenceMs);
    timing.put("warmup_runs", warmupRuns);
    timing.put("samples_kind", "raw");
    timing.put("samples_ms", new ArrayList<Object>(samplesMs));
    if (cooldownMs != null) {
      timing.put("cooldown_ms", cooldownMs);
    }
    m.put("timing", timing);

    if (placement != null && !placement.isEmpty()) {
      m.put("placement", new LinkedHashMap<String, Object>(placement));
    }
    Map<String, Object> thermal = new LinkedHashMap<String, Object>();
    ThermalProbe.Reading before =
        thermalBefore != null ? thermalBefore : ThermalProbe.Reading.unknown("not read");
    ThermalProbe.Reading after = thermalAfter != null ? thermalAfter : before;
    thermal.put("before", before.jsonValue());
    thermal.put("after", after.jsonValue());
    m.put("thermal", thermal);

    Map<String, Object> parity = new LinkedHashMap<String, Object>();
    parity.put("max_abs_diff", this.parity == null ? null : this.parity.maxAbsDiff);
    parity.put("reference_checked", this.parity != null);
    if (this.parity != null) {
      parity.put("rel_diff", this.parity.relDiff);
      parity.put("tolerance", this.parity.tolerance);
      parity.put("passed", this.parity.passed);
    }
    m.put("parity", parity);

    m.put("status", status);
    if (!ok()) {
      m.put("error", truncate(error == null || error.isEmpty() ? "unknown error" : error, 20000));
    }
    if (!notes.isEmpty()) {
      Map<String, Object> n = new LinkedHashMap<String, Object>();
      for (Map.Entry<String, String> e : notes.entrySet()) {
        // Schema bounds: 32 notes, keys <= 64 chars, values <= 2000 chars.
        if (n.size() == 32) {
          break;
        }
        n.put(truncate(e.getKey(), 64), truncate(e.getValue(), 2000));
      }
      m.put("notes", n);
    }
    return m;
  }

  public String toJson() {
    return Json.write(toMap());
  }

  /** ISO 8601 UTC with milliseconds; SimpleDateFormat because java.time needs API 26. */
  public static String iso(long epochMs) {
    SimpleDateFormat f = new SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'", Locale.US);
    f.setTimeZone(TimeZone.getTimeZone("UTC"));
    return f.format(new Date(epochMs));
  }

  private static String truncate(String s, int max) {
    return s.length() <= max ? s : s.substring(0, max - 3) + "...";
  }

  /** A one-line summary for the app's result list. */
  public String summary() {
    String head = artifact.id + " | " + runtimeName + "/" + accelerator + ": ";
    if (!measured()) {
      return head + "ERROR " + error;
    }
    StringBuilder sb = new StringBuilder(head);
    sb.append(String.format(Locale.US, "median %.2f ms over %d runs", median(samplesMs), samplesMs.size()));
    if (parity != null) {
      sb.append(String.format(Locale.US, ", rel diff %.2e", parity.relDiff));
      if (Boolean.FALSE.equals(parity.passed)) {
        sb.append(" PARITY FAILED (tolerance ").append(parity.tolerance).append(")");
      }
    }
    if (placement != null && !placement.isEmpty()) {
      sb.append(", placement ").append(placement);
    }
    if (device.emulator || (runtimeInfo != null && runtimeInfo.emulated)) {
      sb.append(" (emulated: not a speed result)");
    }
    return sb.toString();
  }

  /** Median for display on the phone only; the aggregator computes the real statistics. */
  static double median(List<Double> xs) {
    List<Double> s = new ArrayList<Double>(xs);
    java.util.Collections.sort(s);
    int n = s.size();
    if (n == 0) {
      return Double.NaN;
    }
    return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2.0;
  }
}
