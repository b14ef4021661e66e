package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/**
 * {@link Parity} against the one definition, device_bench.schema.judge_parity: the cases are
 * computed in Python by tests/test_android_app.py and passed as
 * {@code -Dfreenet.parityCases=FILE}; run alone this test fails, naming that command.
 */
public class ParitySchemaCasesTest {
  @Test
  public void agreesWithTheSchemasJudge() throws Exception {
    String path = System.getProperty("freenet.parityCases");
    if (path == null) {
      fail("needs -Dfreenet.parityCases=FILE: run it through `pytest tests/test_android_app.py`");
    }
    List<?> cases = (List<?>) Json.parse(ReportQueue.read(new File(path)));
    assertTrue(cases.size() > 5);
    for (Object o : cases) {
      Map<?, ?> c = (Map<?, ?>) o;
      Parity p = Parity.judge(floats(c.get("out")), floats(c.get("ref")), (String) c.get("precision"),
          (String) c.get("accelerator"));
      String what = c.toString();
      assertEquals(what, ((Number) c.get("rel_diff")).doubleValue(), p.relDiff, 1e-9);
      Object tol = c.get("tolerance");
      assertEquals(what, tol == null ? null : ((Number) tol).doubleValue(), p.tolerance);
      assertEquals(what, c.get("passed"), p.passed);
    }
  }

  private static float[] floats(Object o) {
    List<?> xs = (List<?>) o;
    float[] out = new float[xs.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = ((Number) xs.get(i)).floatValue();
    }
    return out;
  }
}
