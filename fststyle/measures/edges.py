"""Stripes along the picture's border: something a network learned to paint there and nowhere else.

Every layer of the transformer pads its input, so a network can tell where the border is, and it can learn to put
a mark of the painting there (la_muse paints its painting's mirror frame down the left edge: docs/QUALITY.md).
For each edge, the texture across it in the ``BAND`` pixels next to it (horizontal differences beside the left
and right edges, vertical ones beside the top and bottom) over the same differences in the interior; the
output's ratio is divided by the photo's where the photo's own border is busier than its interior (a street
along the bottom edge), and the worst edge is kept: ~1 or below = the border painted like the rest.
"""
from __future__ import annotations

import torch

BAND = 12  # pixels next to each edge, at the evaluator's 512 px (the stripes it was made for: docs/QUALITY.md)


def edge_ratios(image: torch.Tensor, band: int = BAND) -> torch.Tensor:
    """(left, right, top, bottom): each edge's mean absolute difference across it, in its band, over the interior's."""
    x = image.float().reshape(-1, *image.shape[-2:])
    across_columns = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((0, 1))  # one value per gap between columns
    across_rows = (x[:, 1:, :] - x[:, :-1, :]).abs().mean((0, 2))
    if min(len(across_columns), len(across_rows)) <= 4 * band:
        return torch.full((4,), float("nan"))  # too small to have an interior
    inner_columns = across_columns[2 * band:-2 * band].mean().clamp_min(1e-12)
    inner_rows = across_rows[2 * band:-2 * band].mean().clamp_min(1e-12)
    return torch.stack([
        across_columns[:band].mean() / inner_columns,
        across_columns[-band:].mean() / inner_columns,
        across_rows[:band].mean() / inner_rows,
        across_rows[-band:].mean() / inner_rows,
    ])


def edge_stripes(output: torch.Tensor, photo_ratios: torch.Tensor) -> float:
    """The worst edge of ``output`` against the same edge of its photo (``edge_ratios`` of it, at the same size)."""
    return float((edge_ratios(output) / photo_ratios.clamp_min(1.0)).max())
