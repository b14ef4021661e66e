package dev.freenet.bench.core;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * What a loaded engine tells about itself ({@link Engine#describe}): the report's
 * {@code runtime.delegate}, {@code runtime.threads}, {@code runtime.emulated}, its
 * {@code placement} and extra {@code notes}. The runtime name, version and accelerator come from
 * the engine's {@link EngineFactory}.
 */
public final class RuntimeInfo {
  public final String delegate; // nullable: delegate / execution provider / backend in use
  public final Integer threads; // nullable
  public final boolean emulated;
  /** Nodes per compute unit as the runtime reported them, e.g. {"gpu": 60, "cpu": 3}; nullable. */
  public final Map<String, Integer> placement;
  /** Free-form facts worth keeping (e.g. the runtime's delegation log line); never null. */
  public final Map<String, String> notes;

  public RuntimeInfo(
      String delegate,
      Integer threads,
      boolean emulated,
      Map<String, Integer> placement,
      Map<String, String> notes) {
    this.delegate = delegate;
    this.threads = threads;
    this.emulated = emulated;
    this.placement = placement;
    this.notes = notes == null ? new LinkedHashMap<String, String>() : notes;
  }
}
