"""The style file, one owner: a typed metadata record, the torch-free header read, write, validated load,
and the one reader of training checkpoints.

A style file is safetensors (tensors only) with JSON text metadata, so a downloaded style can never run
code; training checkpoints are read with ``weights_only=True`` for the same reason. Everything a file
claims (architecture, tensor shapes) is checked before anything is allocated. torch is imported only by
the functions that need it: ``infer.py`` reads a header before deciding whether to import PyTorch.
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fststyle.atomic import atomic_path
from fststyle.errors import UserError, first_line

if TYPE_CHECKING:
    from fststyle.nets.transformer import TransformerConfig, TransformerNet

FORMAT = "fststyle.transformer/1"
HEADER_LIMIT = 100_000_000  # bytes of JSON header a file may claim; safetensors' own limit

# What a style file may ask for: far beyond any network worth shipping, far below what would take the machine.
ARCHITECTURE_BOUNDS = {"base_channels": (1, 1024), "residual_blocks": (0, 64), "styles": (1, 10_000), "end_kernel": (1, 15), "block": (1, 8)}


@dataclass(frozen=True)
class StyleMeta:
    """What a style file says about itself: how to rebuild the network, which painting, how it was made."""

    style: str = ""  # the style's name; for one style of a multi-style file, that style (or a blend's label)
    style_image: str = ""  # path or URL of the painting
    style_sha256: str = ""
    architecture: dict = field(default_factory=dict)  # TransformerConfig fields
    styles: list = field(default_factory=list)  # multi-style files: [{name, image, sha256}] in norm-table order
    config: dict = field(default_factory=dict)  # the training config (the recipe)
    training: dict = field(default_factory=dict)  # steps, images, machine, wall time
    fststyle_version: str = ""
    multi_style: str = ""  # when one style was picked from a multi-style file: that file's name
    format: str = FORMAT

    @property
    def style_names(self) -> list[str]:
        """The styles of a multi-style file, in the order of its norm tables ([] for a one-style file)."""
        return [s["name"] for s in self.styles]

    def header(self) -> dict[str, str]:
        """The safetensors metadata (string values only)."""
        text = {
            "format": self.format,
            "fststyle_version": self.fststyle_version,
            "architecture": json.dumps(self.architecture),
            "style": self.style,
            "style_image": self.style_image,
            "style_sha256": self.style_sha256,
            "config": json.dumps(self.config, default=str),
            "training": json.dumps(self.training, default=str),
        }
        if self.styles:
            text["styles"] = json.dumps(self.styles)
        return text

    @classmethod
    def from_header(cls, header: dict[str, str], source: Path | str) -> "StyleMeta":
        """The record of a file's metadata; not a style file or unreadable JSON: one UserError naming ``source``."""
        if header.get("format") != FORMAT:
            raise UserError(f"{source}: a safetensors file, but not an fststyle style file (format={header.get('format')!r:.80})")

        def parsed(key: str, default, kind: type):
            try:
                value = json.loads(header[key]) if header.get(key) else default
            except ValueError:
                raise UserError(f"{source}: its {key} metadata is not JSON") from None
            if not isinstance(value, kind):
                raise UserError(f"{source}: its {key} metadata is not a JSON {kind.__name__}: {value!r:.200}")
            return value

        styles = parsed("styles", [], list)
        if not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in styles):
            raise UserError(f"{source}: its styles metadata is not a list of {{name, image, sha256}}")
        return cls(
            style=str(header.get("style") or ""),
            style_image=str(header.get("style_image") or ""),
            style_sha256=str(header.get("style_sha256") or ""),
            architecture=parsed("architecture", None, object),
            styles=styles,
            config=parsed("config", {}, dict),
            training=parsed("training", {}, dict),
            fststyle_version=str(header.get("fststyle_version") or ""),
        )


def raw_header(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata strings from its JSON header alone ({} when it has none or is not one)."""
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        if not 0 < size < HEADER_LIMIT:
            return {}
        try:
            header = json.loads(f.read(size))
        except (ValueError, UnicodeDecodeError):
            return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def read_meta(path: str | Path) -> StyleMeta:
    """The metadata of a ``.safetensors`` style file (header only, no torch) or of a training ``.ckpt``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt: no such file {str(path)!r}")
    if path.suffix == ".ckpt":
        hparams, _, training = read_checkpoint(path)
        return checkpoint_meta(hparams, training)
    try:
        header = raw_header(path)
    except OSError as e:
        raise UserError(f"{path}: unreadable ({first_line(e)})") from None
    return StyleMeta.from_header(header, path)


def style_names_of(path: str | Path) -> list[str]:
    """The styles a file carries ([] for a one-style file, or for a file that is not a style file: its load says why)."""
    try:
        return read_meta(path).style_names
    except UserError:
        return []


# --- training checkpoints ---------------------------------------------------------------------------

_last_checkpoint: tuple[tuple, tuple[dict, dict, dict]] | None = None


def load_checkpoint_file(path: str | Path) -> dict:
    """A whole fststyle training checkpoint, loaded weights-only (no pickled code) and checked to be one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint: no such file {str(path)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message is a dozen lines about weights_only
        raise UserError(f"{path}: not a readable checkpoint, refused: it holds pickled objects other than tensors "
                        "(a weights-only load never runs them)") from None
    except Exception as e:  # noqa: BLE001 - corrupt, truncated and hostile files fail in many ways
        raise UserError(f"{path}: not a readable checkpoint, refused ({e.__class__.__name__}: {first_line(e)})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not isinstance(ckpt.get("hyper_parameters", {}).get("model"), dict):
        raise UserError(f"{path}: not an fststyle training checkpoint")
    return ckpt


def read_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(hyper_parameters, state_dict, training record) of a training checkpoint (``load_checkpoint_file``'s checks).

    The last one read is kept (keyed by path, size and mtime): infer.py asks a ``.ckpt`` for its styles and
    then loads it, and a multi-style checkpoint should be read from disk once.
    """
    global _last_checkpoint
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        stat = None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns) if stat else None
    if key is None or _last_checkpoint is None or _last_checkpoint[0] != key:
        ckpt = load_checkpoint_file(path)
        _last_checkpoint = (key, (ckpt["hyper_parameters"], ckpt["state_dict"], checkpoint_training(ckpt)))
    return _last_checkpoint[1]


def checkpoint_training(ckpt: dict) -> dict:
    """How the checkpointed network was made so far: the record training saved with it, or, in a checkpoint
    written before it saved one, what the checkpoint itself says (its step, image size and data)."""
    record = ckpt.get("training_record")
    if isinstance(record, dict):
        return record
    data = (ckpt["hyper_parameters"].get("config") or {}).get("data") or {}
    return {"steps": ckpt.get("global_step"), "image_size": data.get("image_size"), "data": data.get("path") or data.get("name")}


def checkpoint_meta(hparams: dict, training: dict | None = None) -> StyleMeta:
    """A training checkpoint's hyper-parameters (and training record) as the record its export will carry."""
    style = hparams.get("style", {})
    styles = style.get("styles") or []
    return StyleMeta(
        style=str(style.get("name", "")), style_image=str(style.get("image", "")), style_sha256=str(style.get("sha256") or ""),
        architecture={**hparams["model"], **({"styles": len(styles)} if len(styles) > 1 else {})},
        styles=[{k: s.get(k) for k in ("name", "image", "sha256")} for s in styles],
        config=hparams.get("config") or {},
        training=training or {},
    )


def check_resumable(path: str | Path, model: dict) -> None:
    """Refuse, before training starts, a checkpoint that is hostile, broken or of another architecture.

    Read weights-only; its hyper-parameters are only compared, never instantiated.
    """
    saved = read_checkpoint(path)[0]["model"]
    if saved != model:
        changed = sorted(k for k in {*saved, *model} if saved.get(k) != model.get(k))
        raise UserError(
            f"{path} was trained with another architecture ({', '.join(f'model.{k}={saved.get(k)!r}' for k in changed)}; "
            f"this run has {', '.join(f'model.{k}={model.get(k)!r}' for k in changed)}): use the same model.* settings"
        )


# --- validation ---------------------------------------------------------------------------------------

def check_architecture(architecture, source: Path) -> "TransformerConfig":
    """The ``architecture`` metadata as a config, every field's type and bounds checked before anything is built."""
    from fststyle.nets.transformer import UPSAMPLE_MODES, TransformerConfig

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
    if not isinstance(config.skips, bool):
        raise UserError(f"{source}: architecture skips={config.skips!r:.50} is not true or false")
    if config.end_kernel % 2 == 0:
        raise UserError(f"{source}: architecture end_kernel={config.end_kernel} is not odd")
    if config.upsample not in UPSAMPLE_MODES:
        raise UserError(f"{source}: architecture upsample={config.upsample!r:.50} is not one of {', '.join(UPSAMPLE_MODES)}")
    return config


def check_shapes(config: "TransformerConfig", shapes: dict[str, tuple[int, ...]], source: Path) -> None:
    """The file's tensor shapes against those the architecture implies, computed on the meta device (no memory)."""
    import torch

    from fststyle.nets.transformer import TransformerNet

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in TransformerNet(config).state_dict().items()}
    for key in sorted(set(expected) | set(shapes)):
        if expected.get(key) != shapes.get(key):
            raise UserError(f"{source}: weights do not fit architecture {config.to_dict()}: "
                            f"{key} is {shapes.get(key, 'missing')}, expected {expected.get(key, 'no such weight')}")


def check_replaceable(path: str | Path, style_sha256: str, style_image: str, overwrite: bool = False) -> None:
    """Refuse, before training, to let an export replace a file made from a different style image."""
    path = Path(path)
    if overwrite or not path.exists():
        return
    try:
        meta = read_meta(path)
    except (UserError, OSError):
        meta = None
    if meta is not None and (meta.style_sha256 == style_sha256 if meta.style_sha256 else meta.style_image == style_image):
        return  # the same picture trained again: the new export replaces the old
    made_from = f"was made from {meta.style_image!r}" if meta is not None else "is not an fststyle style file"
    raise UserError(
        f"{path} {made_from}, not from {style_image!r}: refusing to replace it "
        "(nothing trained yet); pass overwrite=true, style.name=NAME or export_dir=DIR"
    )


# --- write and load -------------------------------------------------------------------------------------

def export_transformer(
    transformer: "TransformerNet",
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
    import torch
    from safetensors.torch import save_file

    import fststyle

    meta = StyleMeta(
        style=str(style.get("name", "")), style_image=str(style.get("image", "")), style_sha256=str(style.get("sha256") or ""),
        architecture=transformer.config.to_dict(),
        styles=[{k: s.get(k) for k in ("name", "image", "sha256")} for s in style["styles"]] if transformer.config.styles > 1 else [],
        config=config or {}, training=training or {}, fststyle_version=fststyle.__version__,
    )
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in transformer.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta.header())
    return path


def load_network(path: str | Path) -> tuple["TransformerNet", StyleMeta]:
    """The network as stored (multi-style ones with their norm tables) and its metadata, validated first."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ckpt: no such file {str(path)!r}")
    if path.suffix == ".ckpt":
        hparams, state, training = read_checkpoint(path)
        meta = checkpoint_meta(hparams, training)
        state = {k.removeprefix("transformer."): v for k, v in state.items() if k.startswith("transformer.")}
        config = check_architecture(meta.architecture, path)
        check_shapes(config, {k: tuple(v.shape) for k, v in state.items()}, path)
        return _rebuild(config, state), meta

    def unreadable(e: Exception) -> UserError:
        return UserError(f"{path}: not an fststyle style file (.safetensors) or training checkpoint (.ckpt): {e}")

    try:  # the header first: metadata and shapes are checked before any tensor is read
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable(e) from None
    meta = StyleMeta.from_header(header, path)
    config = check_architecture(meta.architecture, path)
    check_shapes(config, shapes, path)
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable(e) from None
    return _rebuild(config, state), meta


def load_transformer(path: str | Path, style: str | dict | None = None) -> tuple["TransformerNet", StyleMeta]:
    """A one-style network and its metadata from an exported ``.safetensors`` file or a Lightning ``.ckpt``.

    A multi-style file gives the network of ``style`` (a name, or a {name: weight} blend); it must be set.
    """
    net, meta = load_network(path)
    if net.config.styles == 1:
        if isinstance(style, dict) and len(style) > 1:
            raise UserError(f"{path} paints one style ({meta.style}): style_mix needs a multi-style file")
        return net, meta
    names = meta.style_names
    if style is None:
        raise UserError(f"{path} carries {len(names)} styles: pick one with style=NAME or blend with "
                        f"style_mix={{NAME: WEIGHT, ...}}; its styles: {', '.join(names)}")
    mix, label = style_mix(style, names, path)
    picked = meta.styles[names.index(label)] if label in names else {}  # a blend has no one style image
    meta = replace(meta, style=label, multi_style=meta.style,
                   style_image=picked.get("image") or "", style_sha256=picked.get("sha256") or "")
    return net.single(mix).eval(), meta


def _rebuild(config: "TransformerConfig", state: dict[str, Any]) -> "TransformerNet":
    """The network of weights whose shapes ``check_shapes`` has accepted."""
    from fststyle.nets.transformer import TransformerNet

    net = TransformerNet(config)
    net.load_state_dict(state)
    return net.eval()


def style_mix(selection: str | dict, names: list[str], source: str | os.PathLike = "ckpt") -> tuple[list[float], str]:
    """(weights over ``names``, label) of ``style=NAME`` or ``style_mix={NAME: WEIGHT, ...}`` (weights scaled to sum 1)."""
    chosen = {str(selection): 1.0} if isinstance(selection, str) else {str(k): v for k, v in dict(selection).items()}
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise UserError(f"{source} has no style {unknown[0]!r}; its styles: {', '.join(names)}")
    try:
        weights = {n: float(w) for n, w in chosen.items()}
    except (TypeError, ValueError):
        raise UserError(f"style_mix weights must be numbers, got {chosen}") from None
    total = sum(weights.values())
    if not chosen or any(w < 0 for w in weights.values()) or total <= 0:
        raise UserError(f"style_mix needs weights >= 0 with a positive sum, got {chosen}")
    label = next(iter(weights)) if len(weights) == 1 else "+".join(f"{n}{w / total:.2g}" for n, w in weights.items())
    return [weights.get(n, 0.0) / total for n in names], label
