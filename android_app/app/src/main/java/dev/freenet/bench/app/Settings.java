package dev.freenet.bench.app;

import android.content.Context;
import android.content.Intent;
import android.content.SharedPreferences;
import dev.freenet.bench.core.BenchConfig;
import java.io.File;

/**
 * The persisted settings screen values, updated from the settings fields or from intent extras
 * ({@code adb shell am start -n dev.freenet.bench/.app.MainActivity --es server URL --es token T
 * [--es bundle B] [--ei runs N] [--ei warmups W] [--es filter F] [--ez autostart true]}).
 */
final class Settings {
  static final String EXTRA_SERVER = "server";
  static final String EXTRA_TOKEN = "token";
  static final String EXTRA_BUNDLE = "bundle";
  static final String EXTRA_FILTER = "filter";
  static final String EXTRA_RUNS = "runs";
  static final String EXTRA_WARMUPS = "warmups";
  static final String EXTRA_AUTOSTART = "autostart";

  String server = "http://127.0.0.1:8787";
  String token = "";
  String bundle = "";
  String filter = "";
  int runs = 50;
  int warmups = 10;

  static Settings load(Context ctx) {
    SharedPreferences p = prefs(ctx);
    Settings s = new Settings();
    s.server = p.getString(EXTRA_SERVER, s.server);
    s.token = p.getString(EXTRA_TOKEN, s.token);
    s.bundle = p.getString(EXTRA_BUNDLE, s.bundle);
    s.filter = p.getString(EXTRA_FILTER, s.filter);
    s.runs = p.getInt(EXTRA_RUNS, s.runs);
    s.warmups = p.getInt(EXTRA_WARMUPS, s.warmups);
    return s;
  }

  void save(Context ctx) {
    prefs(ctx)
        .edit()
        .putString(EXTRA_SERVER, server)
        .putString(EXTRA_TOKEN, token)
        .putString(EXTRA_BUNDLE, bundle)
        .putString(EXTRA_FILTER, filter)
        .putInt(EXTRA_RUNS, runs)
        .putInt(EXTRA_WARMUPS, warmups)
        .apply();
  }

  /** Applies the extras present in the intent; returns true when autostart was asked. */
  boolean applyExtras(Intent intent) {
    if (intent == null) {
      return false;
    }
    if (intent.hasExtra(EXTRA_SERVER)) {
      server = intent.getStringExtra(EXTRA_SERVER);
    }
    if (intent.hasExtra(EXTRA_TOKEN)) {
      token = intent.getStringExtra(EXTRA_TOKEN);
    }
    if (intent.hasExtra(EXTRA_BUNDLE)) {
      bundle = intent.getStringExtra(EXTRA_BUNDLE);
    }
    if (intent.hasExtra(EXTRA_FILTER)) {
      filter = intent.getStringExtra(EXTRA_FILTER);
    }
    runs = intent.getIntExtra(EXTRA_RUNS, runs);
    warmups = intent.getIntExtra(EXTRA_WARMUPS, warmups);
    return intent.getBooleanExtra(EXTRA_AUTOSTART, false);
  }

  BenchConfig toConfig(File workDir) {
    BenchConfig c = new BenchConfig();
    c.serverUrl = server == null ? null : server.trim();
    c.token = token;
    c.bundle = bundle;
    c.artifactFilter = filter;
    c.timedRuns = runs;
    c.warmupRuns = warmups;
    c.workDir = workDir;
    return c;
  }

  private static SharedPreferences prefs(Context ctx) {
    return ctx.getSharedPreferences("freenet_bench", Context.MODE_PRIVATE);
  }
}
