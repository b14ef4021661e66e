package dev.freenet.bench.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Writes a small model bundle for the fake engine: one artifact per (id, format), a scale
 * "model" file, and raw float32 reference input/output, with a manifest as the export side
 * writes it. Mirrors the bundle the Python test builds for the real aggregator.
 */
final class TestBundle {
  static final long[] SHAPE = {1, 3, 8, 8};

  static Map<String, Object> write(File dir, String bundleId, String[][] artifacts)
      throws IOException {
    int n = 1;
    for (long d : SHAPE) {
      n *= (int) d;
    }
    Random rnd = new Random(0);
    float[] x = new float[n];
    for (int i = 0; i < n; i++) {
      x[i] = (float) rnd.nextGaussian();
    }
    List<Object> arts = new ArrayList<Object>();
    for (String[] spec : artifacts) {
      String id = spec[0];
      String format = spec[1];
      float scale = Float.parseFloat(spec[2]);
      float[] y = new float[n];
      for (int i = 0; i < n; i++) {
        y[i] = x[i] * scale;
      }
      String file = id + "/model." + format;
      String inFile = id + "/reference_input.f32";
      String outFile = id + "/reference_output.f32";
      byte[] model = floats(new float[] {scale});
      byte[] in = floats(x);
      byte[] out = floats(y);
      put(dir, file, model);
      put(dir, inFile, in);
      put(dir, outFile, out);

      Map<String, Object> a = new LinkedHashMap<String, Object>();
      a.put("id", id);
      a.put("model", "fake_scale");
      a.put("model_family", "fake");
      a.put("status", "ok");
      a.put("config_hash", "0");
      a.put("format", format);
      a.put("target", format.equals("onnx") ? "onnxruntime-nnapi" : "litert-gpu");
      a.put("precision", "fp32");
      a.put("file", file);
      a.put("sha256", Sha256.of(model));
      a.put("size_bytes", (long) model.length);
      Map<String, Object> input = new LinkedHashMap<String, Object>();
      input.put("name", "x");
      input.put("shape", shapeList());
      input.put("layout", "NCHW");
      input.put("dtype", "float32");
      input.put("mean", Arrays.asList((Object) 0.0, 0.0, 0.0));
      input.put("std", Arrays.asList((Object) 1.0, 1.0, 1.0));
      a.put("inputs", Arrays.asList((Object) input));
      Map<String, Object> output = new LinkedHashMap<String, Object>();
      output.put("name", "y");
      output.put("shape", shapeList());
      output.put("dtype", "float32");
      a.put("outputs", Arrays.asList((Object) output));
      Map<String, Object> ref = new LinkedHashMap<String, Object>();
      ref.put("input_file", inFile);
      ref.put("output_file", outFile);
      ref.put("dtype", "float32");
      ref.put("input_sha256", Sha256.of(in));
      ref.put("output_sha256", Sha256.of(out));
      ref.put("seed", 0L);
      a.put("reference", ref);
      a.put("macs", (long) n);
      a.put("params", 1L);
      arts.add(a);
    }
    // The export lists formats it could not produce, with no file: phones must skip them.
    Map<String, Object> failed = new LinkedHashMap<String, Object>();
    failed.put("id", "fake_vulkan_failed");
    failed.put("model", "fake_scale");
    failed.put("model_family", "fake");
    failed.put("config_hash", "0");
    failed.put("format", "executorch");
    failed.put("target", "executorch-vulkan");
    failed.put("precision", "fp32");
    failed.put("status", "failed");
    failed.put("error", "lowering failed");
    failed.put("file", null);
    failed.put("sha256", null);
    failed.put("inputs", new ArrayList<Object>());
    failed.put("outputs", new ArrayList<Object>());
    failed.put("reference", null);
    arts.add(failed);
    Map<String, Object> manifest = new LinkedHashMap<String, Object>();
    manifest.put("schema_version", "1");
    manifest.put("bundle_id", bundleId);
    manifest.put("created_at", "2026-11-25T00:00:00Z");
    manifest.put("artifacts", arts);
    put(dir, "manifest.json", Json.write(manifest).getBytes("UTF-8"));
    return manifest;
  }

  static List<Object> shapeList() {
    List<Object> l = new ArrayList<Object>();
    for (long d : SHAPE) {
      l.add(d);
    }
    return l;
  }

  static byte[] floats(float[] v) {
    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    b.asFloatBuffer().put(v);
    return b.array();
  }

  static void put(File dir, String rel, byte[] data) throws IOException {
    File f = new File(dir, rel);
    f.getParentFile().mkdirs();
    FileOutputStream out = new FileOutputStream(f);
    try {
      out.write(data);
    } finally {
      out.close();
    }
  }
}
