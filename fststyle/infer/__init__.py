"""Inference: the stylizer, tiling, the faster rewrite, ONNX/OpenVINO deployment, video, and infer.py's run."""
