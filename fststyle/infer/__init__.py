"""Inference: the stylizer, tiling, the faster rewrite, ONNX/OpenVINO deployment, video, and infer.py's run."""

MIN_SIZE = 16  # pixels: the network down-samples by 4 (8 on 2x2 blocks) and pads by reflection, which needs a few
# pixels a side: size= is at least this, and a narrower image is painted edge-padded to it
