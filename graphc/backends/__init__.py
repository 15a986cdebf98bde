"""Running graphs: the NumPy interpreter, ONNX export, onnxruntime sessions and devices, the two
engines a training run uses, and one run or training step on either backend."""
