"""Johnson et al.'s image transformation network, with Ulyanov's instance norm.

c9s1-32, d64, d128, 5 x R128, u64, u32, c9s1-3 (widths, block count and the 9x9 end kernels configurable:
``conf/model/lite.yaml`` is a network for video and the webcam, chosen by measured frame rate, docs/BENCHMARKS.md).
With ``block=2`` the network runs on 2x2 pixel blocks (space-to-depth in, depth-to-space out, as in ESPCN's
sub-pixel output): every layer at a quarter of the pixels, for the narrow lite layers that are bound by memory
traffic at full resolution; ``skips`` adds U-Net skips, which such a network needs to keep the photo's detail.
Measured as lite candidates and not adopted: faster, weaker painters (docs/QUALITY.md).
Images are RGB in [0, 1] on both sides. The last conv is mapped to [0, 1] with
``(tanh(x / 10) + 1) / 2``: bounded, so the loss network never sees impossible pixels and the
exported net needs no clamp. The 1/10 keeps the first Adam steps (every weight moves by ~lr)
from swinging the output into saturation: without it the style loss jumps ~14x on step 1 and
takes hundreds of steps to recover; with it, it falls from the first step (measured, 128 px
starry_night, 30 steps: style loss 10.1e6 vs 2.1e6 at the end).

With ``styles > 1`` every instance norm is a :class:`ConditionalInstanceNorm2d` (Dumoulin et al.,
"A Learned Representation for Artistic Style", 2017): the convolutions are shared and each style owns
only the norms' scale and shift, 3,200 numbers per style (0.2% of the network).
:meth:`TransformerNet.single` turns a blend of styles back into a plain network, so inference, tiling
and the ONNX/OpenVINO graphs never see the multi-style form.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fststyle.errors import UserError


@dataclass(frozen=True)
class TransformerConfig:
    base_channels: int = 32          # c9s1-32; d64/d128 double it
    residual_blocks: int = 5
    upsample: str = "nearest"       # "nearest" | "bilinear" (resize + conv) or "transpose" (fractionally strided conv)
    styles: int = 1                  # > 1: conditional instance norm, one scale/shift per style
    end_kernel: int = 9              # the first and last convolutions' kernel (odd): they run at full resolution
    block: int = 1                   # pixels per side taken as one input position (space-to-depth); 1: Johnson's
    skips: bool = False              # add each encoder layer's output to the decoder layer of its resolution (U-Net)

    def to_dict(self) -> dict:
        """The fields, ``block`` and ``skips`` left out at their defaults, so files of the plain network read as before."""
        fields = asdict(self)
        for key, plain in (("block", 1), ("skips", False)):
            if fields[key] == plain:
                del fields[key]
        return fields

    @property
    def stride(self) -> int:
        """Pixels per position at the residual blocks: image sizes that are multiples of it need no resizing."""
        return 4 * self.block


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm whose scale and shift are rows of (styles, C) tables, mixed per image by ``mix``.

    ``mix`` is (N or 1, styles): one-hot rows select a style, other convex rows blend styles (the
    paper's interpolation of the norm parameters). Set it with :meth:`TransformerNet.select`.
    Parameter names and the state-dict keys are InstanceNorm2d's; only their shapes gain a row per style.
    """

    def __init__(self, channels: int, styles: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))
        self.mix: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is None:
            raise RuntimeError("a multi-style network needs TransformerNet.select(style) before it runs")
        mix = self.mix.to(self.weight.dtype)
        scale, shift = (mix @ self.weight)[:, :, None, None], (mix @ self.bias)[:, :, None, None]
        return F.instance_norm(x, eps=self.eps) * scale.to(x.dtype) + shift.to(x.dtype)


def instance_norm(channels: int, styles: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True) if styles == 1 else ConditionalInstanceNorm2d(channels, styles)


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding in its input's dtype.

    CPU autocast runs ``reflection_pad2d`` in fp32, so under bf16 every padded activation was cast up and the
    next convolution cast it back down (and again in the backward pass). A pad is a copy of existing values:
    in the input's dtype the output is bit-identical and the casts are gone (bench/train_throughput.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # a TorchScript export runs without autocast
            return F.pad(x, self.padding, "reflect")
        return self.pad_outside_autocast(x)

    @torch.jit.unused
    def pad_outside_autocast(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            if self.training and torch.is_grad_enabled() and x.requires_grad and len(set(self.padding)) == 1:
                return ReflectPadSlices.apply(x, self.padding[0])
            return F.pad(x, self.padding, "reflect")


class ReflectPadSlices(torch.autograd.Function):
    """Reflection padding whose backward folds the padded border back with slices and adds.

    The same gradient as ``reflection_pad2d_backward``, which on the CPU runs several times slower than these
    few memory-bound copies (bench/train_throughput.py --breakdown). Training only: exports never see it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad: int) -> torch.Tensor:
        ctx.pad = pad
        return F.pad(x, (pad, pad, pad, pad), "reflect")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return fold_reflection(fold_reflection(grad, ctx.pad, 2), ctx.pad, 3), None


def fold_reflection(grad: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """The adjoint of reflection-padding ``dim`` by ``pad``: the interior, plus each border added onto the pixels
    it mirrored (row i of the top border is row ``pad - i`` of the input; the edge row itself is not repeated)."""
    n = grad.shape[dim] - 2 * pad
    out = grad.narrow(dim, pad, n).clone()
    out.narrow(dim, 1, pad).add_(grad.narrow(dim, 0, pad).flip(dim))
    out.narrow(dim, n - 1 - pad, pad).add_(grad.narrow(dim, n + pad, pad).flip(dim))
    return out


class ConvLayer(nn.Sequential):
    """Reflection pad, conv, optional instance norm and ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True, styles: int = 1
    ):
        layers: list[nn.Module] = [ReflectionPad(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(instance_norm(cout, styles))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, styles: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3, styles=styles), ConvLayer(channels, channels, 3, relu=False, styles=styles)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


UPSAMPLE_MODES = ("nearest", "bilinear", "transpose")


class Upsample(nn.Module):
    """x2 up-sampling: a resize (nearest or bilinear) + conv, or a fractionally strided conv (``transpose``).

    The zoo's period-4 ripple (the weave, fststyle/measures/weave.py) sits at the network's stride; bilinear
    resizing was tried against it and made it stronger (docs/QUALITY.md), so ``nearest`` stays the default."""

    def __init__(self, cin: int, cout: int, mode: str, styles: int = 1):
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise UserError(f"model.upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
        self.mode = mode
        if mode != "transpose":
            self.conv = ConvLayer(cin, cout, 3, styles=styles)
        else:
            self.conv = nn.Sequential(
                nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                instance_norm(cout, styles),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest" and self.training and not torch.jit.is_scripting():
            x = nearest_upsample_conv(x, self.conv[1])
            for layer in list(self.conv)[2:]:  # the norm and ReLU
                x = layer(x)
            return x
        if self.mode != "transpose":
            x = resize2x(x, self.mode)
        return self.conv(x)


# The 3 taps of a conv over a nearest-2x-resized row, folded onto the 2 source pixels that each output phase sees
# (after replicate padding): phase 0 sees (i-1, i, i), phase 1 (i, i, i+1).
NEAREST_FOLD = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])


def subpixel_kernels(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 conv's (cout, cin, 3, 3) weight over a nearest-2x-resized, reflect-padded input, as the equivalent
    (4 * cout, cin, 2, 2) conv on the small, replicate-padded input: output channel 4 * o + 2 * s + t is output
    channel o's depth-to-space slot (s, t). Differentiable: training takes its gradients through it."""
    cout, cin = weight.shape[:2]
    fold = NEAREST_FOLD.to(weight).flip(0)  # depth-to-space slot s holds phase 1 - s
    return torch.einsum("sau,oiuv,tbv->ostiab", fold, weight, fold).reshape(4 * cout, cin, 2, 2)


def nearest_upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(reflect_pad(resize2x(x, "nearest")))`` computed on the small image: 2.25x fewer multiplications and
    no resized copy (the same function, equal up to float rounding). Training uses it; inference has
    infer/rewrite.SubPixelUpsample, its exported form."""
    with torch.autocast(x.device.type, enabled=False):  # autocast would pad in fp32 (see ReflectionPad)
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    y = F.conv2d(x, subpixel_kernels(conv.weight), conv.bias.repeat_interleave(4))
    return F.pixel_shuffle(y, 2)[:, :, 1:-1, 1:-1]


def resize2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class TransformerNet(nn.Module):
    def __init__(self, config: TransformerConfig | None = None):
        super().__init__()
        self.config = config = config or TransformerConfig()
        c, s, pixels = config.base_channels, config.styles, 3 * config.block**2
        if s < 1:
            raise UserError(f"a transformer needs at least one style, got styles={s}")
        if config.block < 1:
            raise UserError(f"model.block must be a whole number >= 1, got {config.block}")
        self.block, self.skips = config.block, config.skips  # plain values: TorchScript does not read the dataclass
        self.encoder = nn.Sequential(
            ConvLayer(pixels, c, config.end_kernel, styles=s), ConvLayer(c, 2 * c, 3, 2, styles=s), ConvLayer(2 * c, 4 * c, 3, 2, styles=s)
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c, s) for _ in range(config.residual_blocks)])
        self.decoder = nn.Sequential(
            Upsample(4 * c, 2 * c, config.upsample, s),
            Upsample(2 * c, c, config.upsample, s),
            ConvLayer(c, pixels, config.end_kernel, norm=False, relu=False),
        )

    def conditional_norms(self) -> list[ConditionalInstanceNorm2d]:
        return [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]

    def norm_parameters(self) -> list[nn.Parameter]:
        """The instance norms' scales and shifts: all a style owns in a multi-style network."""
        norms = (nn.InstanceNorm2d, ConditionalInstanceNorm2d)
        return [p for m in self.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)]

    def select(self, style: torch.Tensor | int) -> None:
        """Which style the next forward paints: an index, (N,) indices (one per image) or (N or 1, styles) mix rows."""
        style = torch.as_tensor(style)
        mix = F.one_hot(style.reshape(-1).long(), self.config.styles).float() if style.ndim <= 1 else style.float()
        for norm in self.conditional_norms():
            norm.mix = mix.to(norm.weight.device)

    def single(self, mix: torch.Tensor | list[float]) -> "TransformerNet":
        """A plain one-style network painting the blend ``mix`` (styles,) of this one's styles (convex weights)."""
        mix = torch.as_tensor(mix, dtype=torch.float32).reshape(1, -1)
        net = TransformerNet(TransformerConfig(**{**self.config.to_dict(), "styles": 1}))
        state = self.state_dict()
        for name, norm in self.named_modules():
            if isinstance(norm, ConditionalInstanceNorm2d):
                state[f"{name}.weight"] = (mix @ norm.weight.detach().float())[0]
                state[f"{name}.bias"] = (mix @ norm.bias.detach().float())[0]
        net.load_state_dict(state)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        if b == 1:
            return to_image(self.on_blocks(x))
        h, w = x.shape[-2:]
        x = F.pixel_unshuffle(F.pad(x, (0, (-w) % b, 0, (-h) % b), mode="replicate"), b)
        return to_image(F.pixel_shuffle(self.on_blocks(x), b)[:, :, :h, :w])

    def on_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The layers on space-to-depth input (plain pixels when block=1), before ``to_image``."""
        h, w = x.shape[-2:]
        if self.skips:
            first = self.encoder[0](x)
            half = self.encoder[1](first)
            y = self.decoder[0](self.residuals(self.encoder[2](half)))
            y = self.decoder[1](y[:, :, : half.shape[-2], : half.shape[-1]] + half)
            y = self.decoder[2](y[:, :, :h, :w] + first)
        else:
            y = self.decoder(self.residuals(self.encoder(x)))
        if y.shape[-2:] != (h, w):  # odd sizes: strided convs round down, up-sampling doubles
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y


def to_image(y: torch.Tensor) -> torch.Tensor:
    """The last conv's output to [0, 1] pixels (module docstring: why tanh(y / 10))."""
    return (torch.tanh(y / 10.0) + 1) / 2  # a literal, so torch.jit.script compiles it
