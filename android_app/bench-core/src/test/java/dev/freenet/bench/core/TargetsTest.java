package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;

import java.io.File;
import java.util.Arrays;
import java.util.Collection;
import java.util.Map;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;

/** The artifact x accelerator table: which pairs the Android app measures. */
@RunWith(Parameterized.class)
public class TargetsTest {
  @Parameterized.Parameters(name = "{0} {1} on {2}/{3} -> {4}")
  public static Collection<Object[]> cases() {
    return Arrays.asList(
        new Object[][] {
          {"tflite", "litert-gpu", "litert", "gpu", true},
          {"tflite", "litert-gpu", "litert", "xnnpack", true},
          {"tflite", "litert-cpu", "litert", "gpu", true},
          {"tflite", "litert-gpu", "onnxruntime", "cpu", false},
          {"onnx", "onnxruntime-nnapi", "onnxruntime", "nnapi", true},
          {"onnx", "onnxruntime-nnapi", "onnxruntime", "cpu", true},
          {"onnx", "onnxruntime-nnapi", "litert", "gpu", false},
          {"executorch", "executorch-xnnpack", "executorch", "xnnpack", true},
          {"executorch", "executorch-xnnpack", "executorch", "vulkan", false},
          {"executorch", "executorch-vulkan", "executorch", "vulkan", true},
          {"executorch", "executorch-coreml", "executorch", "xnnpack", false},
          {"coreml", "coreml-all", "litert", "gpu", false},
        });
  }

  @Parameterized.Parameter(0)
  public String format;

  @Parameterized.Parameter(1)
  public String target;

  @Parameterized.Parameter(2)
  public String runtime;

  @Parameterized.Parameter(3)
  public String accelerator;

  @Parameterized.Parameter(4)
  public boolean expected;

  @Rule public TemporaryFolder tmp = new TemporaryFolder();

  @Test
  @SuppressWarnings("unchecked")
  public void decides() throws Exception {
    File dir = tmp.newFolder();
    Map<String, Object> m = TestBundle.write(dir, "b", new String[][] {{"a", "tflite", "1"}});
    Map<String, Object> a = (Map<String, Object>) ((java.util.List<?>) m.get("artifacts")).get(0);
    a.put("format", format);
    a.put("target", target);
    BundleManifest.Artifact art = BundleManifest.parse(Json.write(m)).artifacts.get(0);
    assertEquals(expected, Targets.supports(runtime, accelerator, art));
  }
}
