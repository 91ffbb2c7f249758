"""Object detectors that run on onnxruntime alone (no TensorFlow or torch)."""
