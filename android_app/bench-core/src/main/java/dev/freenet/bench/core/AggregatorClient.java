package dev.freenet.bench.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UnsupportedEncodingException;
import java.net.HttpURLConnection;
import java.net.URL;
import java.net.URLEncoder;
import java.nio.charset.Charset;
import java.security.MessageDigest;
import java.util.Map;

/**
 * HTTP client for the aggregator's protocol (docs/protocol.md): health, bundle manifest and file
 * downloads (sha256-checked while streaming), and report upload with the device token.
 *
 * <p>Uses {@link HttpURLConnection} so the same class runs on a desktop JVM (JUnit against the
 * real server on 127.0.0.1) and on Android without any HTTP library.
 */
public final class AggregatorClient {
  private static final Charset UTF8 = Charset.forName("UTF-8");
  // Manifests are small; a bound protects the phone from a wrong URL serving something huge.
  private static final int MAX_MANIFEST_BYTES = 8 << 20;

  private final String baseUrl;
  private final String token;
  private int connectTimeoutMs = 10000;
  private int readTimeoutMs = 60000;

  /** A non-2xx answer; {@link #code} tells permanent (4xx) from transient (5xx) failures. */
  public static final class HttpStatusException extends IOException {
    public final int code;
    public final String body;

    public HttpStatusException(String what, int code, String body) {
      super(what + " failed with HTTP " + code + (body.isEmpty() ? "" : ": " + body));
      this.code = code;
      this.body = body;
    }
  }

  /** A downloaded file whose sha256 differs from the manifest's: it is deleted, never run. */
  public static final class IntegrityException extends IOException {
    public IntegrityException(String message) {
      super(message);
    }
  }

  /**
   * @param baseUrl e.g. {@code http://127.0.0.1:8787} (a trailing slash is fine)
   * @param token device token from {@code freenet token create}; may be null for read-only use
   */
  public AggregatorClient(String baseUrl, String token) {
    if (baseUrl == null || !(baseUrl.startsWith("http://") || baseUrl.startsWith("https://"))) {
      throw new IllegalArgumentException(
          "server URL must start with http:// or https://, got: " + baseUrl);
    }
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    this.token = token;
  }

  public String baseUrl() {
    return baseUrl;
  }

  public AggregatorClient withTimeouts(int connectMs, int readMs) {
    this.connectTimeoutMs = connectMs;
    this.readTimeoutMs = readMs;
    return this;
  }

  /** {@code GET /api/v1/health}; returns the decoded JSON object. */
  public Map<String, Object> health() throws IOException {
    HttpURLConnection c = open("/api/v1/health", "GET");
    try {
      int code = c.getResponseCode();
      String body = readBody(c, code, MAX_MANIFEST_BYTES);
      if (code != 200) {
        throw new HttpStatusException("GET /api/v1/health", code, snippet(body));
      }
      return Json.parseObject(body);
    } finally {
      c.disconnect();
    }
  }

  /**
   * {@code GET /api/v1/bundles}: the bundle names the server offers (lets the app default to
   * the only one when the user left the bundle setting empty).
   */
  public java.util.List<String> listBundles() throws IOException {
    HttpURLConnection c = open("/api/v1/bundles", "GET");
    try {
      int code = c.getResponseCode();
      String body = readBody(c, code, MAX_MANIFEST_BYTES);
      if (code != 200) {
        throw new HttpStatusException("GET /api/v1/bundles", code, snippet(body));
      }
      Object list = Json.parseObject(body).get("bundles");
      java.util.List<String> out = new java.util.ArrayList<String>();
      if (list instanceof java.util.List) {
        for (Object o : (java.util.List<?>) list) {
          if (o instanceof String) {
            out.add((String) o);
          }
        }
      }
      return out;
    } finally {
      c.disconnect();
    }
  }

  /** {@code GET /api/v1/bundles/{bundle}/manifest.json}. */
  public BundleManifest fetchManifest(String bundle) throws IOException {
    String path = "/api/v1/bundles/" + segment(bundle) + "/manifest.json";
    HttpURLConnection c = open(path, "GET");
    try {
      int code = c.getResponseCode();
      String body = readBody(c, code, MAX_MANIFEST_BYTES);
      if (code != 200) {
        throw new HttpStatusException("GET " + path, code, snippet(body));
      }
      return BundleManifest.parse(body);
    } finally {
      c.disconnect();
    }
  }

  /**
   * Downloads {@code GET /api/v1/bundles/{bundle}/files/{relPath}} to {@code dest}, refusing it
   * unless its sha256 equals {@code expectedSha256} (and the server's X-Content-SHA256 header,
   * when sent). A file already at {@code dest} with the right hash is reused, so re-runs on a
   * phone do not download the same model again.
   */
  public File download(String bundle, String relPath, File dest, String expectedSha256)
      throws IOException {
    if (dest.isFile() && expectedSha256.equals(Sha256.of(dest))) {
      return dest;
    }
    String path = "/api/v1/bundles/" + segment(bundle) + "/files/" + relativePath(relPath);
    File parent = dest.getAbsoluteFile().getParentFile();
    if (parent != null && !parent.isDirectory() && !parent.mkdirs()) {
      throw new IOException("cannot create directory " + parent);
    }
    File tmp = new File(dest.getPath() + ".part");
    HttpURLConnection c = open(path, "GET");
    try {
      int code = c.getResponseCode();
      if (code != 200) {
        throw new HttpStatusException("GET " + path, code, snippet(readBody(c, code, 4096)));
      }
      String headerSha = c.getHeaderField("X-Content-SHA256");
      MessageDigest md = Sha256.newDigest();
      InputStream in = c.getInputStream();
      OutputStream out = new FileOutputStream(tmp);
      try {
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
          md.update(buf, 0, n);
          out.write(buf, 0, n);
        }
      } finally {
        out.close();
        in.close();
      }
      String actual = Sha256.hex(md.digest());
      if (!actual.equals(expectedSha256)) {
        throw new IntegrityException(
            "sha256 mismatch for "
                + relPath
                + ": manifest says "
                + expectedSha256
                + ", downloaded file has "
                + actual
                + " (refusing to run it; re-export the bundle or fix the server's copy)");
      }
      if (headerSha != null && !headerSha.trim().equalsIgnoreCase(actual)) {
        throw new IntegrityException(
            "sha256 mismatch for " + relPath + ": X-Content-SHA256 header says " + headerSha
                + ", downloaded file has " + actual);
      }
      if (dest.exists() && !dest.delete()) {
        throw new IOException("cannot replace " + dest);
      }
      if (!tmp.renameTo(dest)) {
        throw new IOException("cannot move " + tmp + " to " + dest);
      }
      return dest;
    } finally {
      c.disconnect();
      if (tmp.exists()) {
        tmp.delete();
      }
    }
  }

  /**
   * {@code POST /api/v1/reports}. Returns the status code for 200 (already stored) and 201
   * (stored); throws {@link HttpStatusException} for any other answer and IOException when the
   * server cannot be reached.
   */
  public int postReport(String reportJson) throws IOException {
    if (token == null || token.isEmpty()) {
      throw new IOException("no device token configured: create one with `freenet token create`");
    }
    HttpURLConnection c = postJson("/api/v1/reports", reportJson.getBytes(UTF8));
    try {
      int code = c.getResponseCode();
      String answer = readBody(c, code, 1 << 16);
      if (code == 200 || code == 201) {
        return code;
      }
      throw new HttpStatusException("POST /api/v1/reports", code, snippet(answer));
    } finally {
      c.disconnect();
    }
  }

  /** One item of a batch answer: 201 stored, 200 already stored, 422 invalid (with detail). */
  public static final class BatchItem {
    public final int status;
    public final String detail; // "" unless the server said why

    BatchItem(int status, String detail) {
      this.status = status;
      this.detail = detail;
    }
  }

  /**
   * {@code POST /api/v1/reports/batch} with body {@code {"reports": [...]}}: the offline queue in
   * one request. Returns one {@link BatchItem} per report, in order (each report is judged
   * alone); throws {@link HttpStatusException} when the request as a whole is refused (401, 404
   * from a server without the endpoint, 413, 5xx) and IOException when the server is unreachable.
   */
  public java.util.List<BatchItem> postBatch(java.util.List<String> reportJsons) throws IOException {
    if (token == null || token.isEmpty()) {
      throw new IOException("no device token configured: create one with `freenet token create`");
    }
    StringBuilder sb = new StringBuilder("{\"reports\":[");
    for (int i = 0; i < reportJsons.size(); i++) {
      sb.append(i == 0 ? "" : ",").append(reportJsons.get(i)); // each is one JSON object
    }
    byte[] body = sb.append("]}").toString().getBytes(UTF8);
    HttpURLConnection c = postJson("/api/v1/reports/batch", body);
    try {
      int code = c.getResponseCode();
      String answer = readBody(c, code, 16 << 20);
      if (code != 200) {
        throw new HttpStatusException("POST /api/v1/reports/batch", code, snippet(answer));
      }
      Object results = Json.parseObject(answer).get("results");
      if (!(results instanceof java.util.List) || ((java.util.List<?>) results).size() != reportJsons.size()) {
        throw new IOException("batch answer does not list one result per report: " + snippet(answer));
      }
      java.util.List<BatchItem> items = new java.util.ArrayList<BatchItem>();
      for (Object o : (java.util.List<?>) results) {
        Map<?, ?> m = o instanceof Map ? (Map<?, ?>) o : null;
        Object status = m == null ? null : m.get("status");
        if (!(status instanceof Number)) {
          throw new IOException("batch result without a status: " + o);
        }
        Object detail = m.get("detail");
        items.add(new BatchItem(((Number) status).intValue(),
            detail == null ? "" : detail instanceof String ? (String) detail : Json.write(detail)));
      }
      return items;
    } finally {
      c.disconnect();
    }
  }

  private HttpURLConnection open(String path, String method) throws IOException {
    HttpURLConnection c = (HttpURLConnection) new URL(baseUrl + path).openConnection();
    c.setRequestMethod(method);
    c.setConnectTimeout(connectTimeoutMs);
    c.setReadTimeout(readTimeoutMs);
    c.setUseCaches(false);
    c.setRequestProperty("Accept", "application/json");
    return c;
  }

  private static String readBody(HttpURLConnection c, int code, int limit) throws IOException {
    InputStream in = code >= 400 ? c.getErrorStream() : c.getInputStream();
    if (in == null) {
      return "";
    }
    try {
      ByteArrayOutputStream buf = new ByteArrayOutputStream();
      byte[] chunk = new byte[8192];
      int n;
      while ((n = in.read(chunk)) > 0) {
        if (buf.size() + n > limit) {
          throw new IOException("response larger than " + limit + " bytes");
        }
        buf.write(chunk, 0, n);
      }
      return new String(buf.toByteArray(), UTF8);
    } finally {
      in.close();
    }
  }

  private static String snippet(String body) {
    String s = body.trim();
    return s.length() > 2000 ? s.substring(0, 2000) + "..." : s;
  }

  /** One URL path segment; bundle ids are plain names, never paths. */
  static String segment(String s) {
    if (s == null || s.isEmpty() || s.equals(".") || s.equals("..") || s.indexOf('/') >= 0) {
      throw new IllegalArgumentException("not a valid bundle name: " + s);
    }
    try {
      return URLEncoder.encode(s, "UTF-8").replace("+", "%20");
    } catch (UnsupportedEncodingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** A manifest-relative file path, each segment encoded; ".." and absolute paths refused. */
  static String relativePath(String rel) {
    if (rel == null || rel.isEmpty() || rel.startsWith("/")) {
      throw new IllegalArgumentException("not a relative bundle path: " + rel);
    }
    StringBuilder sb = new StringBuilder();
    for (String part : rel.split("/")) {
      if (part.isEmpty() || part.equals(".") || part.equals("..")) {
        throw new IllegalArgumentException("not a clean relative bundle path: " + rel);
      }
      if (sb.length() > 0) {
        sb.append('/');
      }
      sb.append(segment(part));
    }
    return sb.toString();
  }

  /** Opens an authenticated JSON POST and sends the body; the caller reads the answer and disconnects. */
  private HttpURLConnection postJson(String path, byte[] body) throws IOException {
    HttpURLConnection c = open(path, "POST");
    c.setDoOutput(true);
    c.setRequestProperty("Content-Type", "application/json");
    c.setRequestProperty("Authorization", "Bearer " + token);
    c.setFixedLengthStreamingMode(body.length);
    try {
      OutputStream out = c.getOutputStream();
      try {
        out.write(body);
      } finally {
        out.close();
      }
    } catch (IOException e) {
      c.disconnect();
      throw e;
    }
    return c;
  }
}
