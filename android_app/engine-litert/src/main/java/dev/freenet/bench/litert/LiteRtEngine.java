package dev.freenet.bench.litert;

import dev.freenet.bench.core.BundleManifest;
import dev.freenet.bench.core.Engine;
import dev.freenet.bench.core.RuntimeInfo;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;
import org.tensorflow.lite.gpu.CompatibilityList;
import org.tensorflow.lite.gpu.GpuDelegate;

/**
 * A .tflite model on the LiteRT Interpreter, either with XNNPACK (the CPU path LiteRT applies by
 * default) or with the GPU delegate. Placement is what LiteRT logs when it applies a delegate
 * ("Replacing N out of M node(s) with delegate (...)"); the Java API has no call for it.
 */
final class LiteRtEngine implements Engine {
  private final boolean gpu;
  private final int threads;
  private Interpreter interpreter;
  private GpuDelegate gpuDelegate;
  private ByteBuffer in;
  private ByteBuffer out;
  private int outCount;
  private Map<String, Integer> placement;
  private final Map<String, String> notes = new LinkedHashMap<String, String>();

  LiteRtEngine(boolean gpu, int threads) {
    this.gpu = gpu;
    this.threads = threads;
  }

  @Override
  public void load(File modelFile, BundleManifest.Artifact artifact) throws Exception {
    long logStart = System.currentTimeMillis();
    Interpreter.Options options = new Interpreter.Options();
    if (gpu) {
      CompatibilityList compat = new CompatibilityList();
      try {
        if (!compat.isDelegateSupportedOnThisDevice()) {
          throw new UnsupportedOperationException(
              "LiteRT's CompatibilityList says the GPU delegate is not supported on this device"
                  + " (GPU driver/OpenCL/OpenGL ES version)");
        }
        gpuDelegate = new GpuDelegate(compat.getBestOptionsForThisDevice());
      } finally {
        compat.close();
      }
      options.addDelegate(gpuDelegate);
    } else {
      options.setUseXNNPACK(true);
      options.setNumThreads(threads);
    }
    interpreter = new Interpreter(map(modelFile), options);
    interpreter.allocateTensors();

    Tensor input = interpreter.getInputTensor(0);
    Tensor output = interpreter.getOutputTensor(0);
    if (input.dataType() != DataType.FLOAT32 || output.dataType() != DataType.FLOAT32) {
      throw new UnsupportedOperationException(
          "the runner feeds float32; this model's input/output are "
              + input.dataType() + "/" + output.dataType()
              + " (export int8 models with float32 I/O)");
    }
    int expected = artifact.inputs.get(0).elementCount();
    if (input.numElements() != expected) {
      throw new IllegalArgumentException(
          "model input " + Arrays.toString(input.shape()) + " has " + input.numElements()
              + " elements, the manifest's input shape has " + expected);
    }
    in = ByteBuffer.allocateDirect(input.numBytes()).order(ByteOrder.nativeOrder());
    out = ByteBuffer.allocateDirect(output.numBytes()).order(ByteOrder.nativeOrder());
    outCount = output.numElements();
    notes.put("litert_input_shape", Arrays.toString(input.shape()));
    placement = LogcatDelegation.read(logStart, gpu ? "gpu" : "xnnpack", notes);
  }

  @Override
  public float[] run(float[] input) {
    in.rewind();
    in.asFloatBuffer().put(input);
    out.rewind();
    // Interpreter.run returns when the outputs are in `out` (the GPU delegate copies back), so
    // timing around it covers the whole inference.
    interpreter.run(in, out);
    out.rewind();
    FloatBuffer fb = out.asFloatBuffer();
    float[] result = new float[outCount];
    fb.get(result);
    return result;
  }

  @Override
  public RuntimeInfo info() {
    return new RuntimeInfo(gpu ? "GpuDelegate" : "XNNPACK", gpu ? null : threads, false);
  }

  @Override
  public Map<String, Integer> placement() {
    return placement;
  }

  @Override
  public Map<String, String> notes() {
    return notes;
  }

  @Override
  public void close() {
    if (interpreter != null) {
      interpreter.close();
      interpreter = null;
    }
    if (gpuDelegate != null) {
      gpuDelegate.close();
      gpuDelegate = null;
    }
  }

  private static MappedByteBuffer map(File f) throws IOException {
    FileInputStream s = new FileInputStream(f);
    try {
      FileChannel ch = s.getChannel();
      return ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
    } finally {
      s.close();
    }
  }
}
