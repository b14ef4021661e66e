package dev.freenet.bench.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The parts of a model bundle's {@code manifest.json} that a phone needs: which artifacts exist,
 * where their files are, their sha256, input/output tensors and the reference input/output.
 *
 * <p>The manifest is written by {@code freenet export}; fields the runner does not use (passes,
 * tool versions, provenance, ...) are ignored so the export side can grow without breaking apps.
 * Missing required fields raise {@link ManifestException} naming the field and artifact.
 */
public final class BundleManifest {
  public final String bundleId;
  /** Artifacts the export produced (status "ok"): the ones a phone can measure. */
  public final List<Artifact> artifacts;
  /** "id: status (error)" of artifacts whose export failed or was skipped; nothing to run. */
  public final List<String> notExported;

  BundleManifest(String bundleId, List<Artifact> artifacts, List<String> notExported) {
    this.bundleId = bundleId;
    this.artifacts = Collections.unmodifiableList(artifacts);
    this.notExported = Collections.unmodifiableList(notExported);
  }

  /** A manifest that is not what the protocol describes. */
  public static final class ManifestException extends RuntimeException {
    public ManifestException(String message) {
      super(message);
    }
  }

  /** One input or output tensor of an artifact. */
  public static final class TensorSpec {
    public final String name;
    public final long[] shape;
    public final String layout; // "NCHW" | "NHWC" | "NC"; null for outputs
    public final String dtype;

    TensorSpec(String name, long[] shape, String layout, String dtype) {
      this.name = name;
      this.shape = shape;
      this.layout = layout;
      this.dtype = dtype;
    }

    /** Number of elements; the shape must be static (all dims >= 1). */
    public int elementCount() {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      return (int) n;
    }
  }

  /** Raw little-endian float32 reference tensors stored in the bundle. */
  public static final class Reference {
    public final String inputFile;
    public final String outputFile;
    public final String inputSha256;
    public final String outputSha256;

    Reference(String inputFile, String outputFile, String inputSha256, String outputSha256) {
      this.inputFile = inputFile;
      this.outputFile = outputFile;
      this.inputSha256 = inputSha256;
      this.outputSha256 = outputSha256;
    }
  }

  /** One exported model file. */
  public static final class Artifact {
    public final String id;
    public final String model;
    public final String modelFamily; // nullable: the manifest's model_family
    public final String format; // onnx | coreml | tflite | executorch
    public final String target; // e.g. litert-gpu, onnxruntime-nnapi, executorch-vulkan
    public final String precision; // fp32 | fp16 | int8
    public final String file;
    public final String sha256;
    public final long sizeBytes;
    public final List<TensorSpec> inputs;
    public final List<TensorSpec> outputs;
    public final Reference reference; // null when the bundle has none
    public final Long macs; // nullable
    public final Long params; // nullable

    Artifact(
        String id,
        String model,
        String modelFamily,
        String format,
        String target,
        String precision,
        String file,
        String sha256,
        long sizeBytes,
        List<TensorSpec> inputs,
        List<TensorSpec> outputs,
        Reference reference,
        Long macs,
        Long params) {
      this.id = id;
      this.model = model;
      this.modelFamily = modelFamily;
      this.format = format;
      this.target = target;
      this.precision = precision;
      this.file = file;
      this.sha256 = sha256;
      this.sizeBytes = sizeBytes;
      this.inputs = Collections.unmodifiableList(inputs);
      this.outputs = Collections.unmodifiableList(outputs);
      this.reference = reference;
      this.macs = macs;
      this.params = params;
    }

    @Override
    public String toString() {
      return id + " (" + format + ", " + target + ", " + precision + ")";
    }
  }

  public static BundleManifest parse(String jsonText) {
    Map<String, Object> root;
    try {
      root = Json.parseObject(jsonText);
    } catch (Json.ParseException e) {
      throw new ManifestException("manifest.json is not valid JSON: " + e.getMessage());
    }
    String bundleId = str(root, "bundle_id", "manifest");
    Object arts = root.get("artifacts");
    if (!(arts instanceof List)) {
      throw new ManifestException("manifest has no \"artifacts\" list");
    }
    List<Artifact> artifacts = new ArrayList<Artifact>();
    List<String> notExported = new ArrayList<String>();
    for (Object o : (List<?>) arts) {
      Map<String, Object> a = asMap(o, "artifact");
      // The export records failed/skipped formats in the manifest too (with no file): they
      // are reported by the export, not measured by phones.
      String status = optStr(a, "status");
      if (status != null && !"ok".equals(status)) {
        String err = optStr(a, "error");
        notExported.add(
            str(a, "id", "artifact") + ": " + status + (err == null ? "" : " (" + err + ")"));
        continue;
      }
      artifacts.add(artifact(a));
    }
    return new BundleManifest(bundleId, artifacts, notExported);
  }

  private static Artifact artifact(Map<String, Object> a) {
    String id = str(a, "id", "artifact");
    String where = "artifact " + id;
    String sha = str(a, "sha256", where).toLowerCase();
    checkSha(sha, where + " sha256");
    List<TensorSpec> inputs = tensors(a.get("inputs"), where + " inputs", true);
    List<TensorSpec> outputs = tensors(a.get("outputs"), where + " outputs", false);
    Reference ref = null;
    Object r = a.get("reference");
    if (r != null) {
      Map<String, Object> rm = asMap(r, where + " reference");
      String dtype = optStr(rm, "dtype");
      if (dtype != null && !"float32".equals(dtype)) {
        throw new ManifestException(where + ": reference dtype " + dtype + " is not float32");
      }
      String inSha = str(rm, "input_sha256", where + " reference").toLowerCase();
      String outSha = str(rm, "output_sha256", where + " reference").toLowerCase();
      checkSha(inSha, where + " reference input_sha256");
      checkSha(outSha, where + " reference output_sha256");
      ref =
          new Reference(
              str(rm, "input_file", where + " reference"),
              str(rm, "output_file", where + " reference"),
              inSha,
              outSha);
    }
    Object size = a.get("size_bytes");
    Object macs = a.get("macs");
    Object params = a.get("params");
    return new Artifact(
        id,
        str(a, "model", where),
        a.get("model_family") instanceof String ? (String) a.get("model_family") : null,
        str(a, "format", where),
        str(a, "target", where),
        str(a, "precision", where),
        str(a, "file", where),
        sha,
        size instanceof Number ? ((Number) size).longValue() : -1,
        inputs,
        outputs,
        ref,
        macs instanceof Long ? (Long) macs : null,
        params instanceof Long ? (Long) params : null);
  }

  private static List<TensorSpec> tensors(Object o, String where, boolean isInput) {
    if (!(o instanceof List) || ((List<?>) o).isEmpty()) {
      throw new ManifestException(where + ": expected a non-empty list");
    }
    List<TensorSpec> out = new ArrayList<TensorSpec>();
    for (Object t : (List<?>) o) {
      Map<String, Object> m = asMap(t, where);
      Object shapeObj = m.get("shape");
      if (!(shapeObj instanceof List) || ((List<?>) shapeObj).isEmpty()) {
        throw new ManifestException(where + ": tensor has no shape");
      }
      List<?> dims = (List<?>) shapeObj;
      long[] shape = new long[dims.size()];
      for (int i = 0; i < shape.length; i++) {
        Object d = dims.get(i);
        // Phones measure one fixed shape; a symbolic dim ("batch") cannot be timed.
        if (!(d instanceof Long) || ((Long) d) < 1) {
          throw new ManifestException(where + ": shape " + dims + " is not fully static");
        }
        shape[i] = (Long) d;
      }
      out.add(
          new TensorSpec(
              str(m, "name", where),
              shape,
              isInput ? optStr(m, "layout") : null,
              optStr(m, "dtype")));
    }
    return out;
  }

  private static void checkSha(String sha, String where) {
    if (!Sha256.isHex(sha)) {
      throw new ManifestException(where + " is not 64 lowercase hex characters: " + sha);
    }
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> asMap(Object o, String where) {
    if (!(o instanceof Map)) {
      throw new ManifestException(where + ": expected a JSON object");
    }
    return (Map<String, Object>) o;
  }

  private static String str(Map<String, Object> m, String key, String where) {
    Object v = m.get(key);
    if (!(v instanceof String) || ((String) v).isEmpty()) {
      throw new ManifestException(where + ": missing string field \"" + key + "\"");
    }
    return (String) v;
  }

  private static String optStr(Map<String, Object> m, String key) {
    Object v = m.get(key);
    return v instanceof String ? (String) v : null;
  }
}
