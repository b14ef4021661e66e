package dev.freenet.bench.core;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpHandler;
import com.sun.net.httpserver.HttpServer;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A protocol stand-in on 127.0.0.1 for unit tests (the real aggregator is exercised by
 * AggregatorIntegrationTest): serves one bundle directory, stores posted reports by run_id
 * with the 201/200 idempotency rule, and can be told to answer a fixed error status or to
 * corrupt a file so the client's sha256 check has something to catch.
 */
final class StubAggregator implements AutoCloseable {
  final HttpServer server;
  final File bundleDir;
  final String bundleName;
  final String token;
  final List<String> posted = Collections.synchronizedList(new ArrayList<String>());
  final Set<String> runIds = Collections.synchronizedSet(new HashSet<String>());
  volatile int forcedPostStatus; // 0: behave normally
  volatile int failNextPosts; // answer this many POSTs with 503 first
  volatile String corruptPath; // serve this file with one byte flipped
  volatile boolean noBatchEndpoint; // answer the batch endpoint 404, like an older aggregator
  final Map<String, Integer> itemStatus = Collections.synchronizedMap(new HashMap<String, Integer>());
  final List<Integer> batchSizes = Collections.synchronizedList(new ArrayList<Integer>());

  StubAggregator(File bundleDir, String bundleName, String token) throws IOException {
    this.bundleDir = bundleDir;
    this.bundleName = bundleName;
    this.token = token;
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/",
        new HttpHandler() {
          @Override
          public void handle(HttpExchange ex) throws IOException {
            try {
              route(ex);
            } finally {
              ex.close();
            }
          }
        });
    server.start();
  }

  String url() {
    return "http://127.0.0.1:" + server.getAddress().getPort();
  }

  private void route(HttpExchange ex) throws IOException {
    String path = ex.getRequestURI().getPath();
    String prefix = "/api/v1/bundles/" + bundleName + "/";
    if (ex.getRequestMethod().equals("GET") && path.equals("/api/v1/health")) {
      send(ex, 200, "{\"status\":\"ok\",\"schema_version\":\"1\"}".getBytes("UTF-8"), null);
    } else if (ex.getRequestMethod().equals("GET") && path.equals(prefix + "manifest.json")) {
      send(ex, 200, read(new File(bundleDir, "manifest.json")), null);
    } else if (ex.getRequestMethod().equals("GET") && path.startsWith(prefix + "files/")) {
      String rel = path.substring((prefix + "files/").length());
      File f = new File(bundleDir, rel);
      if (!f.isFile()) {
        send(ex, 404, "{\"detail\":\"no such file\"}".getBytes("UTF-8"), null);
        return;
      }
      byte[] data = read(f);
      String sha = Sha256.of(data);
      if (rel.equals(corruptPath)) {
        data[0] ^= 1; // the header still announces the original hash, like a bad disk would
      }
      send(ex, 200, data, sha);
    } else if (ex.getRequestMethod().equals("POST") && path.equals("/api/v1/reports")) {
      String auth = ex.getRequestHeaders().getFirst("Authorization");
      byte[] body = readAll(ex.getRequestBody());
      if (failNextPosts > 0) {
        failNextPosts--;
        send(ex, 503, "{\"detail\":\"down for maintenance\"}".getBytes("UTF-8"), null);
      } else if (forcedPostStatus != 0) {
        send(ex, forcedPostStatus, "{\"detail\":\"forced\"}".getBytes("UTF-8"), null);
      } else if (auth == null || !auth.equals("Bearer " + token)) {
        send(ex, 401, "{\"detail\":\"bad token\"}".getBytes("UTF-8"), null);
      } else {
        String json = new String(body, "UTF-8");
        String runId = (String) Json.parseObject(json).get("run_id");
        boolean fresh = runIds.add(runId);
        if (fresh) {
          posted.add(json);
        }
        send(ex, fresh ? 201 : 200, ("{\"run_id\":\"" + runId + "\"}").getBytes("UTF-8"), null);
      }
    } else if (ex.getRequestMethod().equals("POST") && path.equals("/api/v1/reports/batch")
        && !noBatchEndpoint) {
      batch(ex);
    } else {
      send(ex, 404, "{\"detail\":\"not found\"}".getBytes("UTF-8"), null);
    }
  }

  /** The batch endpoint's rules: the request may fail as a whole, else one result per item. */
  private void batch(HttpExchange ex) throws IOException {
    String auth = ex.getRequestHeaders().getFirst("Authorization");
    byte[] body = readAll(ex.getRequestBody());
    if (failNextPosts > 0) {
      failNextPosts--;
      send(ex, 503, "{\"detail\":\"down for maintenance\"}".getBytes("UTF-8"), null);
      return;
    }
    if (forcedPostStatus != 0 && forcedPostStatus != 422) {
      send(ex, forcedPostStatus, "{\"detail\":\"forced\"}".getBytes("UTF-8"), null);
      return;
    }
    if (auth == null || !auth.equals("Bearer " + token)) {
      send(ex, 401, "{\"detail\":\"bad token\"}".getBytes("UTF-8"), null);
      return;
    }
    List<?> reports = (List<?>) Json.parseObject(new String(body, "UTF-8")).get("reports");
    batchSizes.add(reports.size());
    List<Object> results = new ArrayList<Object>();
    for (int i = 0; i < reports.size(); i++) {
      @SuppressWarnings("unchecked")
      Map<String, Object> report = (Map<String, Object>) reports.get(i);
      String runId = (String) report.get("run_id");
      Map<String, Object> item = new java.util.LinkedHashMap<String, Object>();
      item.put("index", (long) i);
      item.put("run_id", runId);
      Integer forced = forcedPostStatus == 422 ? Integer.valueOf(422) : itemStatus.get(runId);
      if (forced != null) {
        item.put("status", (long) forced);
        item.put("detail", "forced");
      } else {
        boolean fresh = runIds.add(runId);
        if (fresh) {
          posted.add(Json.write(report));
        }
        item.put("status", fresh ? 201L : 200L);
      }
      results.add(item);
    }
    Map<String, Object> answer = new java.util.LinkedHashMap<String, Object>();
    answer.put("results", results);
    send(ex, 200, Json.write(answer).getBytes("UTF-8"), null);
  }

  private static void send(HttpExchange ex, int code, byte[] body, String sha) throws IOException {
    ex.getResponseHeaders().set("Content-Type", "application/json");
    if (sha != null) {
      ex.getResponseHeaders().set("X-Content-SHA256", sha);
    }
    ex.sendResponseHeaders(code, body.length);
    OutputStream out = ex.getResponseBody();
    out.write(body);
    out.close();
  }

  static byte[] read(File f) throws IOException {
    InputStream in = new FileInputStream(f);
    try {
      return readAll(in);
    } finally {
      in.close();
    }
  }

  static byte[] readAll(InputStream in) throws IOException {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    byte[] chunk = new byte[8192];
    int n;
    while ((n = in.read(chunk)) > 0) {
      buf.write(chunk, 0, n);
    }
    return buf.toByteArray();
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
