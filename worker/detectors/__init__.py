"""Object detectors without TensorFlow or torch: NanoDet on onnxruntime, SSD OIDv4 on LiteRT."""
