package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.List;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

public class ManifestTest {
  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  private Map<String, Object> sample() throws Exception {
    File dir = tmp.newFolder("bundle");
    return TestBundle.write(dir, "b1", new String[][] {{"a_tfl", "tflite", "2"}, {"a_onnx", "onnx", "3"}});
  }

  @Test
  public void parsesWhatTheExportSideWrites() throws Exception {
    BundleManifest m = BundleManifest.parse(Json.write(sample()));
    assertEquals("b1", m.bundleId);
    assertEquals(2, m.artifacts.size());
    BundleManifest.Artifact a = m.artifacts.get(0);
    assertEquals("a_tfl", a.id);
    assertEquals("tflite", a.format);
    assertEquals("litert-gpu", a.target);
    assertEquals(192, a.inputs.get(0).elementCount());
    assertEquals("NCHW", a.inputs.get(0).layout);
    assertTrue(Sha256.isHex(a.reference.outputSha256));
    assertEquals(Long.valueOf(192), a.macs);
  }

  @Test
  public void failedExportsAreListedNotMeasured() throws Exception {
    BundleManifest m = BundleManifest.parse(Json.write(sample()));
    assertEquals(1, m.notExported.size());
    assertTrue(m.notExported.get(0), m.notExported.get(0).startsWith("fake_vulkan_failed: failed"));
  }

  @Test
  public void referenceIsOptional() throws Exception {
    Map<String, Object> m = sample();
    @SuppressWarnings("unchecked")
    Map<String, Object> a = (Map<String, Object>) ((List<?>) m.get("artifacts")).get(0);
    a.remove("reference");
    assertNull(BundleManifest.parse(Json.write(m)).artifacts.get(0).reference);
  }

  private void expectError(Map<String, Object> m, String fragment) {
    try {
      BundleManifest.parse(Json.write(m));
      fail("accepted a manifest that should fail with: " + fragment);
    } catch (BundleManifest.ManifestException e) {
      assertTrue(e.getMessage(), e.getMessage().contains(fragment));
    }
  }

  @Test
  @SuppressWarnings("unchecked")
  public void missingFieldsAreNamed() throws Exception {
    Map<String, Object> m = sample();
    ((Map<String, Object>) ((List<?>) m.get("artifacts")).get(1)).remove("file");
    expectError(m, "artifact a_onnx: missing string field \"file\"");
  }

  @Test
  @SuppressWarnings("unchecked")
  public void symbolicShapesAreRefused() throws Exception {
    Map<String, Object> m = sample();
    Map<String, Object> a = (Map<String, Object>) ((List<?>) m.get("artifacts")).get(0);
    Map<String, Object> in = (Map<String, Object>) ((List<?>) a.get("inputs")).get(0);
    ((List<Object>) in.get("shape")).set(0, "batch");
    expectError(m, "not fully static");
  }

  @Test
  @SuppressWarnings("unchecked")
  public void badShaIsRefused() throws Exception {
    Map<String, Object> m = sample();
    ((Map<String, Object>) ((List<?>) m.get("artifacts")).get(0)).put("sha256", "abc");
    expectError(m, "sha256");
  }

  @Test
  public void notJsonIsAManifestError() {
    try {
      BundleManifest.parse("<html>");
      fail();
    } catch (BundleManifest.ManifestException e) {
      assertTrue(e.getMessage().contains("not valid JSON"));
    }
  }

  @Test
  public void unsafeRelativePathsAreRefused() {
    for (String bad : new String[] {"../x", "/etc/passwd", "a/../../b", "a//b", ""}) {
      try {
        AggregatorClient.relativePath(bad);
        fail("accepted " + bad);
      } catch (IllegalArgumentException expected) {
        // ok
      }
    }
    assertEquals("a%20b/c.tflite", AggregatorClient.relativePath("a b/c.tflite"));
  }
}
