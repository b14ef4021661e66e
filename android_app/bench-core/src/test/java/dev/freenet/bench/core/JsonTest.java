package dev.freenet.bench.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;
import org.junit.experimental.runners.Enclosed;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;

@RunWith(Enclosed.class)
public class JsonTest {
  @RunWith(Parameterized.class)
  public static class RoundTrip {
    @Parameterized.Parameters(name = "{0}")
    public static Collection<Object[]> cases() {
      return Arrays.asList(
          new Object[][] {
            {"{}"},
            {"[]"},
            {"{\"a\":1,\"b\":[true,false,null],\"c\":\"x\"}"},
            {"[1.5,-2.0,1.0E-7,123456789012]"},
            {"\"quote \\\" backslash \\\\ newline \\n tab \\t ctrl \\u0001\""},
            {"\"unicode \u00e9\u4e2d\""},
            {"{\"nested\":{\"deeper\":{\"list\":[{\"k\":[]}]}}}"},
          });
    }

    @Parameterized.Parameter public String text;

    @Test
    public void parseThenWriteIsStable() {
      Object v = Json.parse(text);
      String once = Json.write(v);
      assertEquals(once, Json.write(Json.parse(once)));
      assertEquals(v, Json.parse(once));
    }
  }

  @RunWith(Parameterized.class)
  public static class Malformed {
    @Parameterized.Parameters(name = "{0}")
    public static Collection<Object[]> cases() {
      return Arrays.asList(
          new Object[][] {
            {"{"}, {"[1,]"}, {"{\"a\" 1}"}, {"\"unterminated"}, {"01"}, {"1."}, {"tru"},
            {"{\"a\":1,\"a\":2}"}, {"[1] 2"}, {"\"bad \\x escape\""}, {"NaN"},
          });
    }

    @Parameterized.Parameter public String text;

    @Test
    public void isRejectedWithOffset() {
      try {
        Json.parse(text);
        fail("accepted malformed JSON: " + text);
      } catch (Json.ParseException e) {
        assertTrue(e.getMessage(), e.getMessage().contains("offset"));
      }
    }
  }

  public static class Values {
    @Test
    public void integersAreLongsAndFractionsDoubles() {
      List<?> l = (List<?>) Json.parse("[3, 3.0, -1e2]");
      assertEquals(3L, l.get(0));
      assertEquals(3.0, l.get(1));
      assertEquals(-100.0, l.get(2));
    }

    @Test
    public void keyOrderIsKept() {
      Map<String, Object> m = new LinkedHashMap<String, Object>();
      m.put("z", 1);
      m.put("a", 2);
      assertEquals("{\"z\":1,\"a\":2}", Json.write(m));
    }

    @Test(expected = IllegalArgumentException.class)
    public void nanIsRefused() {
      Json.write(Arrays.asList((Object) Double.NaN));
    }

    @Test(expected = IllegalArgumentException.class)
    public void infinityIsRefused() {
      Json.write(Float.POSITIVE_INFINITY);
    }

    @Test
    public void deepNestingIsAnErrorNotAStackOverflow() {
      StringBuilder sb = new StringBuilder();
      for (int i = 0; i < 10000; i++) {
        sb.append('[');
      }
      try {
        Json.parse(sb.toString());
        fail("accepted 10000 nested arrays");
      } catch (Json.ParseException e) {
        assertTrue(e.getMessage().contains("nesting"));
      }
    }

    @Test
    public void controlCharactersAreEscaped() {
      assertEquals("\"a\\u0002b\\u2028\"", Json.write("a\u0002b\u2028"));
    }
  }
}
