"""One small, self-describing file per style: transformer weights in safetensors plus metadata.

No pickle anywhere: safetensors holds only tensors, and the metadata is JSON text, so a
downloaded style file can never run code. Lightning checkpoints are read with
``weights_only=True`` for the same reason.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import fststyle
from fststyle.atomic import atomic_path
from fststyle.errors import UserError, exit_code
from fststyle.multistyle import read_metadata, style_mix, style_names
from fststyle.nets.transformer import TransformerConfig, TransformerNet

FORMAT = "fststyle.transformer/1"


def export_transformer(
    transformer: TransformerNet,
    path: str | Path,
    style: dict,
    config: dict | None = None,
    training: dict | None = None,
    half: bool = False,
) -> Path:
    """Write ``transformer`` to ``path`` (atomically) with what is needed to rebuild and credit it.

    ``training``: how it was made (steps, images, machine, wall time), shown by ``ckpt=list``.
    ``half``: fp16 weights, half the size (the shipped styles); they load back as fp32.
    """
    path = Path(path)
    metadata = {
        "format": FORMAT,
        "fststyle_version": fststyle.__version__,
        "architecture": json.dumps(transformer.config.to_dict()),
        "style": str(style.get("name", "")),
        "style_image": str(style.get("image", "")),
        "style_sha256": str(style.get("sha256") or ""),
        "config": json.dumps(config or {}, default=str),
        "training": json.dumps(training or {}, default=str),
    }
    if transformer.config.styles > 1:  # which row of the norm tables is which style
        metadata["styles"] = json.dumps([{k: s.get(k) for k in ("name", "image", "sha256")} for s in style["styles"]])
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in transformer.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def check_replaceable(path: str | Path, style_sha256: str, style_image: str, overwrite: bool = False) -> None:
    """Refuse, before training, to let an export replace a file made from a different style image."""
    path = Path(path)
    if overwrite or not path.exists():
        return
    try:
        meta = read_metadata(path)
    except OSError:
        meta = {}
    same = meta.get("style_sha256") == style_sha256 if meta.get("style_sha256") else meta.get("style_image") == style_image
    if meta.get("format") == FORMAT and same:
        return  # the same picture trained again: the new export replaces the old
    made_from = f"was made from {meta.get('style_image')!r}" if meta.get("format") == FORMAT else "is not an fststyle style file"
    raise UserError(
        f"{path} {made_from}, not from {style_image!r}: refusing to replace it "
        "(nothing trained yet); pass overwrite=true, style.name=NAME or export_dir=DIR"
    )


# What a style file may ask for: far beyond any network worth shipping, far below what would take the machine.
ARCHITECTURE_BOUNDS = {"base_channels": (1, 1024), "residual_blocks": (0, 64), "styles": (1, 10_000)}
UPSAMPLE_MODES = ("nearest", "transpose")


def check_architecture(architecture, source: Path) -> TransformerConfig:
    """The ``architecture`` metadata as a config, every field's type and bounds checked before anything is built."""
    if not isinstance(architecture, dict):
        raise UserError(f"{source}: architecture metadata is not a JSON object: {architecture!r:.200}")
    unknown = sorted(set(architecture) - set(TransformerConfig.__dataclass_fields__))
    if unknown:
        raise UserError(f"{source}: unknown architecture field {unknown[0]!r}")
    config = TransformerConfig(**architecture)
    for key, (low, high) in ARCHITECTURE_BOUNDS.items():
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise UserError(f"{source}: architecture {key}={value!r:.50} is not a whole number in {low}..{high}")
    if config.upsample not in UPSAMPLE_MODES:
        raise UserError(f"{source}: architecture upsample={config.upsample!r:.50} is not one of {', '.join(UPSAMPLE_MODES)}")
    return config


def check_shapes(config: TransformerConfig, shapes: dict[str, tuple[int, ...]], source: Path) -> None:
    """The file's tensor shapes against those the architecture implies, computed on the meta device (no memory)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TransformerNet(config).state_dict().items()}
    for key in sorted(set(expected) | set(shapes)):
        if expected.get(key) != shapes.get(key):
            raise UserError(f"{source}: weights do not fit architecture {config.to_dict()}: "
                            f"{key} is {shapes.get(key, 'missing')}, expected {expected.get(key, 'no such weight')}")


def _rebuild(config: TransformerConfig, state: dict[str, torch.Tensor]) -> TransformerNet:
    """The network of weights whose shapes ``check_shapes`` has accepted."""
    net = TransformerNet(config)
    net.load_state_dict(state)
    return net.eval()


def _json_field(meta: dict, key: str, default: str, source: Path):
    try:
        return json.loads(meta.get(key) or default)
    except ValueError:
        raise UserError(f"{source}: its {key} metadata is not JSON") from None


def read_lightning_checkpoint(path: Path) -> tuple[dict, dict]:
    """(hyper_parameters, state_dict) of a training checkpoint, loaded without unpickling code."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated and hostile files fail in many ways
        raise UserError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt.get("hyper_parameters", {}):
        raise UserError(f"{path}: not an fststyle training checkpoint")
    return ckpt["hyper_parameters"], ckpt["state_dict"]


def load_transformer(path: str | Path, style: str | dict | None = None) -> tuple[TransformerNet, dict[str, Any]]:
    """A one-style network and its metadata from an exported ``.safetensors`` file or a Lightning ``.ckpt``.

    A multi-style file gives the network of ``style`` (a name, or a {name: weight} blend); it must be set.
    """
    net, meta = load_network(path)
    if net.config.styles == 1:
        if isinstance(style, dict) and len(style) > 1:
            raise UserError(f"{path} paints one style ({meta.get('style')}): style_mix needs a multi-style file")
        return net, meta
    names = style_names(meta)
    if style is None:
        raise UserError(f"{path} carries {len(names)} styles: pick one with style=NAME or blend with "
                        f"style_mix={{NAME: WEIGHT, ...}}; its styles: {', '.join(names)}")
    mix, label = style_mix(style, names, path)
    picked = meta["styles"][names.index(label)] if label in names else {}  # a blend has no one style image
    meta = {**meta, "style": label, "multi_style": meta.get("style"),
            "style_image": picked.get("image") or "", "style_sha256": picked.get("sha256") or ""}
    return net.single(mix).eval(), meta


def load_network(path: str | Path) -> tuple[TransformerNet, dict[str, Any]]:
    """The network as stored (multi-style ones with their norm tables) and its metadata."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt: no such file {str(path)!r}")
    if path.suffix == ".ckpt":
        hparams, state = read_lightning_checkpoint(path)
        state = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
        style = hparams.get("style", {})
        styles = len(style.get("styles") or [None])
        architecture = {**hparams["model"], **({"styles": styles} if styles > 1 else {})}
        meta = {
            "format": FORMAT, "style": style.get("name", ""), "style_image": style.get("image", ""),
            "style_sha256": style.get("sha256") or "", "architecture": architecture,
            "styles": style.get("styles") or [],
        }
        config = check_architecture(architecture, path)
        check_shapes(config, {k: tuple(v.shape) for k, v in state.items()}, path)
        return _rebuild(config, state), meta
    from safetensors import safe_open

    def unreadable(e: Exception) -> UserError:
        return UserError(f"{path}: not an fststyle style file (.safetensors) or training checkpoint (.ckpt): {e}")

    try:  # the header first: metadata and shapes are checked before any tensor is read
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable(e) from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: a safetensors file, but not an fststyle style file (format={meta.get('format')!r})")
    meta["architecture"] = _json_field(meta, "architecture", "", path)
    meta["styles"] = _json_field(meta, "styles", "[]", path)  # as a .ckpt's: a list, [] for one style
    config = check_architecture(meta["architecture"], path)
    check_shapes(config, shapes, path)
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable(e) from None
    return _rebuild(config, state), meta


def export_checkpoint(ckpt: str | Path, export_dir: str | Path) -> Path:
    """Export the transformer of a Lightning training checkpoint as ``<export_dir>/<style>.safetensors``."""
    ckpt = Path(ckpt)
    hparams, _ = read_lightning_checkpoint(ckpt)
    net, meta = load_network(ckpt)
    style = hparams.get("style", {})
    return export_transformer(net, Path(export_dir) / f"{style.get('name') or 'style'}.safetensors", style, hparams.get("config"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fststyle.export", description=export_checkpoint.__doc__)
    parser.add_argument("ckpt", help="Lightning checkpoint, e.g. outputs/starry_night/checkpoints/last.ckpt")
    parser.add_argument("export_dir", nargs="?", default="exports")
    args = parser.parse_args(argv)
    return exit_code(lambda: print(export_checkpoint(args.ckpt, args.export_dir)))


if __name__ == "__main__":
    sys.exit(main())
