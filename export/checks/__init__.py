"""Delegate checks for exported artifacts: does each file run where it is meant to run.

`tflite_census` statically lists a .tflite's ops and tensor ranks against the LiteRT GPU delegate's
operator support (kept as data in `export/data/litert_gpu_ops.json`) and the project's layout rules;
`litert_gpu` runs the real LiteRT GPU accelerator on SwiftShader's software Vulkan driver in a
subprocess and compares it with the CPU interpreter; `onnx_mobile` wraps onnxruntime's mobile
usability checker (NNAPI and Core ML partitions). Heavy imports stay inside the functions.
"""
