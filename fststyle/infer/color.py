"""After-effects on a stylized image: keep the content's colours, or only part of the style.

Written with plain arithmetic on channel slices, so the same functions serve torch tensors
(the PyTorch path) and numpy arrays (the onnxruntime path, which must not import torch).
Images are (N, 3, H, W), RGB in [0, 1].
"""
from __future__ import annotations

# ITU-R BT.601 luma, as in JPEG's YCbCr
KR, KG, KB = 0.299, 0.587, 0.114


def luminance(image):
    return KR * image[:, 0:1] + KG * image[:, 1:2] + KB * image[:, 2:3]


def preserve_color(stylized, content):
    """The stylized luminance with the content's chroma (Gatys et al. 2017, luminance-only transfer).

    Adding the luminance difference to every channel keeps Cb and Cr of the content exactly
    (before clipping), because the RGB->YCbCr transform is linear and (1, 1, 1) has no chroma.
    """
    out = content + (luminance(stylized) - luminance(content))
    return out.clip(0, 1)


def blend(stylized, content, strength: float):
    """``strength`` 0 gives the content, 1 the full style, in between a linear mix."""
    if strength >= 1:
        return stylized
    return content + strength * (stylized - content)


def finish(stylized, content, preserve_colors: bool = False, strength: float = 1.0):
    if preserve_colors:
        stylized = preserve_color(stylized, content)
    return blend(stylized, content, strength)
