package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import org.junit.Test;

/** The parity verdict (docs/protocol.md "Parity"); ParitySchemaCasesTest checks it against Python's. */
public class ParityTest {
  private static float[] scaled(float[] x, float s) {
    float[] y = new float[x.length];
    for (int i = 0; i < x.length; i++) {
      y[i] = x[i] * s;
    }
    return y;
  }

  private static final float[] REF = {0.5f, -2.0f, 1.0f, 0.25f};

  @Test
  public void fp32OnCpuPathsHasTheTightBound() {
    for (String acc : new String[] {"cpu", "xnnpack", "wasm", "portable"}) {
      assertEquals(1e-3, Parity.tolerance("fp32", acc), 0);
    }
    Parity p = Parity.judge(scaled(REF, 1.002f), REF, "fp32", "xnnpack");
    assertEquals(0.002, p.relDiff, 1e-6);
    assertEquals(Boolean.FALSE, p.passed);
    assertTrue(p.failure(), p.failure().contains("tolerance 1e-03"));
  }

  @Test
  public void pathsThatMayRunInFp16HaveTheLooseBound() {
    for (String acc : new String[] {"gpu", "nnapi", "vulkan", "ane"}) {
      assertEquals(5e-2, Parity.tolerance("fp32", acc), 0);
    }
    assertEquals(5e-2, Parity.tolerance("fp16", "cpu"), 0);
    assertEquals(Boolean.TRUE, Parity.judge(scaled(REF, 1.002f), REF, "fp32", "gpu").passed);
    assertEquals(Boolean.FALSE, Parity.judge(scaled(REF, 1.5f), REF, "fp16", "cpu").passed);
  }

  @Test
  public void int8HasNoBound() {
    Parity p = Parity.judge(scaled(REF, 3f), REF, "int8", "xnnpack");
    assertNull(p.tolerance);
    assertNull(p.passed);
    assertEquals(2.0, p.relDiff, 1e-6);
  }

  @Test
  public void anFp16BoundOnATinyReferenceIsInconclusive() {
    float[] tiny = {1e-5f, -3e-5f};
    Parity p = Parity.judge(scaled(tiny, 2f), tiny, "fp32", "gpu");
    assertNull(p.tolerance);
    assertNull(p.passed);
    // The fp32 CPU bound still applies: the CPU path computes in fp32.
    assertEquals(Boolean.FALSE, Parity.judge(scaled(tiny, 2f), tiny, "fp32", "cpu").passed);
  }

  @Test
  public void unusableOutputsAreErrorsNotVerdicts() {
    try {
      Parity.judge(new float[] {Float.NaN, 0, 0, 0}, REF, "fp32", "cpu");
      fail("NaN output judged");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage().contains("not finite"));
    }
    try {
      Parity.judge(new float[3], REF, "fp32", "cpu");
      fail("short output judged");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage().contains("3 values"));
    }
  }
}
