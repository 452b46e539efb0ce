"""Two numbers for how good a stylization is: its style distance and its content distance.

Both are relative distances of VGG16 features, so 0 is a perfect match and 1 is "as far as the
target is from zero":

- **style distance**: for each of relu1_2, relu2_2, relu3_3, relu4_3, the Frobenius distance between
  the output's Gram matrix and the style image's, divided by the norm of the style image's; the mean
  over the four layers. The style image is taken at ``STYLE_SIZE`` px on its long side.
- **content distance**: the distance between the output's relu3_3 features and the photo's, divided by
  the norm of the photo's.

They are not the training loss (whose layers, weights and normalisation are the recipe being tuned),
so different recipes can be compared on them. ``fststyle.evaluate`` reports them on photos at
512 px; training logs them on its validation batch.
"""
from __future__ import annotations

import torch

from fststyle.nets.vgg import LossNetwork

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu3_3"
STYLE_SIZE = 512  # long side of the style image for its reference Grams
PHOTO_SIZE = 512  # long side of the photos in fststyle.evaluate


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) in fp32, divided by H*W (the scale cancels in a relative distance)."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per item of the batch: ||a - b|| / ||b|| (b broadcasts)."""
    diff = (a - b).flatten(1).norm(dim=1)
    return diff / b.flatten(1).norm(dim=1).clamp_min(1e-12)


class QualityMeter:
    """Style and content distances against one style image, on a VGG16 loss network.

    Not an ``nn.Module``: it borrows the network (e.g. the training loss's own frozen VGG), so it must
    not add a second copy of its weights to a module's state dict.
    """

    def __init__(self, network: LossNetwork, style_image: torch.Tensor):
        missing = [name for name in (*STYLE_LAYERS, CONTENT_LAYER) if name not in network.names]
        if network.network != "vgg16" or missing:
            raise ValueError(f"the quality measure needs a VGG16 up to relu4_3 (got {network.network}, missing {missing})")
        self.network = network
        self.style_grams = self._grams(style_image)

    @torch.no_grad()
    def features(self, images: torch.Tensor, layers=STYLE_LAYERS) -> dict[str, torch.Tensor]:
        """fp32 VGG features; the default layers serve both distances (relu3_3 is a style layer too)."""
        device = self.network.mean.device
        with torch.autocast(device.type, enabled=False):
            return self.network(images.to(device).float(), layers)

    def _grams(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(images)
        return {name: gram(feats[name]) for name in STYLE_LAYERS}

    def style_layers_from(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, layers) relative Gram distance per style layer (``STYLE_LAYERS`` order): the mean hides which
        scale is missing (relu4_3 holds a painting's large forms)."""
        per_layer = [relative_distance(gram(feats[n]), self.style_grams[n].to(feats[n].device)) for n in STYLE_LAYERS]
        return torch.stack(per_layer, dim=1)

    def style_from(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) style distance of images whose ``features()`` are given."""
        return self.style_layers_from(feats).mean(1)

    @staticmethod
    def content_from(feats: dict[str, torch.Tensor], photo_feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) content distance from the images' and the photos' features."""
        return relative_distance(feats[CONTENT_LAYER].float(), photo_feats[CONTENT_LAYER].float())

    def style_distance(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) mean over the style layers of the relative Gram distance to the style image."""
        return self.style_from(self.features(images))

    def content_distance(self, images: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        """(N,) relative relu3_3 feature distance of each image to its photo."""
        return self.content_from(self.features(images, [CONTENT_LAYER]), self.features(photos, [CONTENT_LAYER]))

    def __call__(self, images: torch.Tensor, photos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both distances, per image, of stylized ``images`` made from ``photos`` (RGB [0, 1], same shape)."""
        feats = self.features(images)  # one pass serves both
        return {"style": self.style_from(feats), "content": self.content_from(feats, self.features(photos, [CONTENT_LAYER]))}
