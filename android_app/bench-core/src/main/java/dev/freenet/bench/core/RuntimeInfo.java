package dev.freenet.bench.core;

/**
 * What a loaded engine tells about itself for the report's {@code runtime} object (the name,
 * version and accelerator come from its {@link EngineFactory}).
 */
public final class RuntimeInfo {
  public final String delegate; // nullable: delegate / execution provider / backend in use
  public final Integer threads; // nullable
  public final boolean emulated;

  public RuntimeInfo(String delegate, Integer threads, boolean emulated) {
    this.delegate = delegate;
    this.threads = threads;
    this.emulated = emulated;
  }
}
