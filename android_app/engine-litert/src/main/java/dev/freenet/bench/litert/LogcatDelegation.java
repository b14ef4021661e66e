package dev.freenet.bench.litert;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads this app's own logcat for the line LiteRT prints when it applies a delegate:
 * "Replacing 60 out of 63 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 1
 * partitions". Apps may read their own log without a permission. Returns null (no placement in
 * the report) when the line is not found, e.g. on devices whose logcat lacks "-v epoch".
 */
final class LogcatDelegation {
  private LogcatDelegation() {}

  static final Pattern REPLACING =
      Pattern.compile("Replacing (\\d+) out of (\\d+) node\\(s\\) with delegate \\(([^)]+)\\)");
  private static final Pattern EPOCH = Pattern.compile("^\\s*(\\d+)\\.(\\d{3})");

  static Map<String, Integer> read(long sinceMs, String unit, Map<String, String> notes) {
    String line = null;
    try {
      Process p =
          Runtime.getRuntime()
              .exec(new String[] {"logcat", "-d", "-v", "epoch", "-s", "tflite:I"});
      BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), "UTF-8"));
      try {
        String l;
        while ((l = r.readLine()) != null) {
          Matcher t = EPOCH.matcher(l);
          if (!t.find()) {
            continue;
          }
          long ms = Long.parseLong(t.group(1)) * 1000 + Long.parseLong(t.group(2));
          if (ms + 5 >= sinceMs && REPLACING.matcher(l).find()) {
            line = l; // the newest line since this engine was created
          }
        }
      } finally {
        r.close();
        p.destroy();
      }
    } catch (Exception e) {
      notes.put("placement", "logcat unreadable: " + e);
      return null;
    }
    if (line == null) {
      notes.put("placement", "LiteRT logged no delegation line");
      return null;
    }
    return parse(line, unit, notes);
  }

  static Map<String, Integer> parse(String line, String unit, Map<String, String> notes) {
    Matcher m = REPLACING.matcher(line);
    if (!m.find()) {
      return null;
    }
    int delegated = Integer.parseInt(m.group(1));
    int total = Integer.parseInt(m.group(2));
    notes.put("litert_delegation", m.group(0) + " [" + m.group(3) + "]");
    Map<String, Integer> placement = new LinkedHashMap<String, Integer>();
    placement.put(unit, delegated);
    placement.put("cpu", Math.max(0, total - delegated));
    return placement;
  }
}
