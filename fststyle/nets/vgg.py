"""The frozen VGG loss network: layers by name, weights that carry their own preprocessing.

A weights choice fixes how pixels must be prepared (torchvision's ImageNet weights want
RGB in [0, 1] normalised by mean/std; the Caffe weights want BGR 0-255 minus the mean), so
the network owns its preprocessing and callers always pass RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from fststyle.cache import cache_dir
from fststyle.errors import UserError, first_line

# Public downloads of the Caffe-trained VGGs in torchvision layout (jcjohnson/pytorch-vgg);
# the hash prefix in each name is checked by torch.hub.
CAFFE_URLS = {
    "vgg16": "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
    "vgg19": "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
}
_CFG = {  # convs per block
    "vgg16": [2, 2, 3, 3, 3],
    "vgg19": [2, 2, 4, 4, 4],
}
WIDTHS = (64, 128, 256, 512, 512)  # feature channels of blocks 1-5, either network


@dataclass(frozen=True)
class Preprocessing:
    """How a weights kind wants its pixels, and how to bring its features to one common scale.

    ``feature_scale`` multiplies the features so that loss weights mean the same for every
    weights kind: Caffe inputs are in 0-255 units, torchvision's are divided by std (~0.226)
    of a [0, 1] image, so its activations are roughly 255 * 0.226 times smaller.
    """

    name: str
    mean: tuple[float, float, float]   # in the order the network sees channels
    std: tuple[float, float, float]
    scale: float                       # pixel [0, 1] -> network units, before mean/std
    bgr: bool
    feature_scale: float


PREPROCESSING = {
    "torchvision": Preprocessing("torchvision", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0, False, 255 * 0.226),
    "caffe": Preprocessing("caffe", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), 255.0, True, 1.0),
}


def layer_names(network: str) -> list[str]:
    """Names of ``torchvision.models.<network>().features`` modules in order: conv1_1, relu1_1, ..., pool5."""
    if network not in _CFG:
        raise UserError(f"loss.network must be one of {sorted(_CFG)}, got {network!r}")
    names = []
    for block, convs in enumerate(_CFG[network], start=1):
        for i in range(1, convs + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def vgg_features(network: str) -> nn.Sequential:
    """``torchvision.models.<network>().features`` (the same modules, indices and initialisation scheme), built here:
    importing torchvision.models imports torch._dynamo through torchvision.ops, seconds of every start-up."""
    layers: list[nn.Module] = []
    channels = 3
    for width, convs in zip(WIDTHS, _CFG[network]):
        for _ in range(convs):
            conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def _load_state_dict(network: str, weights: str) -> dict[str, torch.Tensor] | None:
    if weights == "random":
        return None
    if weights in ("torchvision", "caffe"):
        try:
            if weights == "torchvision":
                import torchvision

                enum = getattr(torchvision.models, f"VGG{network[3:]}_Weights").IMAGENET1K_V1
                return enum.get_state_dict(progress=True, check_hash=True, weights_only=True)
            return torch.hub.load_state_dict_from_url(
                CAFFE_URLS[network], model_dir=str(cache_dir() / "weights"), check_hash=True, weights_only=True
            )
        except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash is a RuntimeError
            raise UserError(
                f"could not get {weights} {network} weights ({e.__class__.__name__}: {first_line(e)}); "
                "offline, pass a local file: loss.weights=PATH"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"loss.weights: no such file {str(path)!r} (use torchvision, caffe, random or a path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise UserError(
            f"loss.weights: {str(path)!r} is not a readable weights-only state dict, refused "
            f"({e.__class__.__name__}: {first_line(e)})"
        ) from None


def network_of(state: dict[str, torch.Tensor]) -> str:
    """vgg16 or vgg19, told apart by how many conv layers a ``features`` state dict holds."""
    convs = sum(1 for k, v in state.items() if not k.startswith("classifier.") and k.endswith("weight") and v.dim() == 4)
    for network, blocks in _CFG.items():
        if convs == sum(blocks):
            return network
    raise UserError(f"loss.weights holds {convs} conv layers: neither vgg16 (13) nor vgg19 (16)")


def resolve_network(network: str, weights: str) -> tuple[str, dict[str, torch.Tensor] | None]:
    """``auto``: what a weights file holds, else vgg19 (Gatys et al.'s choice); also the loaded file, if any."""
    if network != "auto":
        return network, None
    if weights in ("torchvision", "caffe", "random"):
        return "vgg19", None
    state = _load_state_dict("vgg19", weights)  # a PATH: the network name is not used to read it
    return network_of({k.removeprefix("features."): v for k, v in state.items()}), state


def default_preprocessing(weights: str) -> str:
    # Named weights know their convention; a local file is assumed to be Caffe-converted (the common case).
    return "torchvision" if weights in ("torchvision", "random") else "caffe"


class LossNetwork(nn.Module):
    """VGG ``features``, frozen, truncated after the deepest layer any loss asks for."""

    def __init__(
        self,
        network: str = "vgg16",            # vgg16 | vgg19 | auto (see resolve_network)
        weights: str = "torchvision",
        layers: Iterable[str] = ("relu4_3",),
        pooling: str = "max",
        preprocessing: str = "auto",
    ):
        super().__init__()
        network, state = resolve_network(network, weights)
        names = layer_names(network)
        layers = list(layers)
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise UserError(f"unknown {network} layer(s) {unknown}; known: {', '.join(names)}")
        if pooling not in ("max", "avg"):
            raise UserError(f"loss.pooling must be 'max' or 'avg', got {pooling!r}")
        auto = default_preprocessing(weights)
        if preprocessing == "auto":
            preprocessing = auto
        elif weights in ("torchvision", "caffe") and preprocessing != auto:
            raise UserError(f"loss.weights={weights} needs preprocessing {auto!r}, not {preprocessing!r}")
        if preprocessing not in PREPROCESSING:
            raise UserError(f"loss.preprocessing must be auto, torchvision or caffe, got {preprocessing!r}")
        self.network, self.weights, self.pooling = network, weights, pooling
        self.preprocessing = PREPROCESSING[preprocessing]

        features = vgg_features(network)
        if state is None:
            state = _load_state_dict(network, weights)
        if state is not None:
            state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
            try:
                features.load_state_dict(state)
            except RuntimeError as e:
                raise UserError(f"loss.weights={weights!r} does not fit {network}: {str(e).splitlines()[0]}") from None
        depth = max(names.index(name) for name in layers) + 1
        modules = list(features.children())[:depth]
        if pooling == "avg":
            modules = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in modules]
        for m in modules:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # conv outputs are taps too (conv4_2), so keep them intact
        self.features = nn.Sequential(*modules)
        self.names = names[:depth]
        self.requires_grad_(False)  # frozen; no layer here (conv, ReLU, pooling) acts differently in eval mode, so
        # the network follows its owner's mode (Lightning warns about eval-mode modules at the start of training)

        p = self.preprocessing
        self.register_buffer("mean", torch.tensor(p.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(p.std).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def channels(layer: str) -> int:
        """Feature channels at a layer: 64, 128, 256, 512, 512 for blocks 1-5 of either VGG."""
        block = int(layer.removeprefix("conv").removeprefix("relu").removeprefix("pool").split("_")[0])
        return WIDTHS[block - 1]

    def train(self, mode: bool = True) -> "LossNetwork":
        return super().train(False)  # always frozen

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> what these weights were trained on."""
        p = self.preprocessing
        x = image * p.scale
        if p.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features at ``layers`` of an RGB [0, 1] batch; stops at the deepest one asked for."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for name, module in zip(self.names, self.features):
            x = module(x)
            if name in wanted:
                out[name] = x * self.preprocessing.feature_scale if self.preprocessing.feature_scale != 1 else x
                if len(out) == len(wanted):
                    break
        missing = wanted - out.keys()
        if missing:
            raise KeyError(f"layers {sorted(missing)} are deeper than this loss network was built for")
        return out
