"""One small, self-describing file per style: transformer weights in safetensors plus metadata.

No pickle anywhere: safetensors holds only tensors, and the metadata is JSON text, so a
downloaded style file can never run code. Lightning checkpoints are read with
``weights_only=True`` for the same reason.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import fststyle
from fststyle.errors import UserError
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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)  # safetensors writes 0600; a style file is meant to be shared
    os.replace(tmp, path)
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


def _rebuild(architecture: dict, state: dict[str, torch.Tensor], source: Path) -> TransformerNet:
    try:
        net = TransformerNet(TransformerConfig(**architecture))
    except TypeError as e:
        raise UserError(f"{source}: unknown architecture {architecture} ({e})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit architecture {architecture}: {str(e).splitlines()[0]}") from None
    return net.eval()


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
        return _rebuild(architecture, state, path), meta
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not an fststyle style file (.safetensors) or training checkpoint (.ckpt): {e}") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: a safetensors file, but not an fststyle style file (format={meta.get('format')!r})")
    meta["architecture"] = json.loads(meta["architecture"])
    meta["styles"] = json.loads(meta.get("styles") or "[]")  # as a .ckpt's: a list, [] for one style
    state = {k: v.float() for k, v in state.items()}
    return _rebuild(meta["architecture"], state, path), meta


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
    try:
        print(export_checkpoint(args.ckpt, args.export_dir))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
