"""Image I/O, one home: pictures read as cameras and phones store them (turned by their EXIF orientation,
in a colour profile), fitted to a long side, tensor <-> PIL, and written atomically with their EXIF.

A phone stores a portrait photo sideways with an orientation tag, and often in Display P3: every viewer
shows it upright and in its colours, so fststyle reads every picture (photos to stylize, training
images, style images) the same way before the network sees it, and writes outputs upright in sRGB.
"""
from __future__ import annotations

import io
import logging

from PIL import Image, ImageCms, ImageOps

log = logging.getLogger(__name__)

ORIENTATION = 0x0112  # the EXIF tag
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}  # what a folder of pictures holds
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def upright_srgb(image: Image.Image) -> Image.Image:
    """``image`` turned upright (its orientation tag applied and removed) and converted to sRGB if it
    carries another ICC profile. A profile that cannot be read is ignored, as viewers do."""
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" not in ImageCms.getProfileDescription(profile).lower().replace(" ", ""):
                mode = "RGBA" if image.mode == "RGBA" else "RGB"
                converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode=mode)
                converted.info = {k: v for k, v in image.info.items() if k != "icc_profile"}
                image = converted
        except (OSError, ImageCms.PyCMSError) as e:
            log.warning("ignoring an unreadable colour profile (%s)", e)
    return image


def open_rgb(path) -> Image.Image:
    """An image file as upright sRGB ``RGB``, loaded (the file is closed)."""
    with Image.open(path) as im:
        return upright_srgb(im).convert("RGB")


def fit_long_side(image: Image.Image, size: int | None) -> Image.Image:
    """``image`` with its long side at ``size`` px (aspect kept, Lanczos); as it is when ``size`` is None."""
    if not size:
        return image
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)


def output_exif(path) -> bytes | None:
    """The EXIF of a photo for its stylized copy: everything kept, orientation reset (the pixels are upright)."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
    except Exception:  # noqa: BLE001 - no EXIF is not an error
        return None
    if not exif:
        return None
    exif[ORIENTATION] = 1
    return exif.tobytes()


def read_array(path, size: int | None = None):
    """(H, W, 3) uint8 of an image file, upright and in sRGB, as a viewer shows it; ``size``: its long side."""
    import numpy as np

    return np.asarray(fit_long_side(open_rgb(path), size))


def load_image(path, size: int | None = None):
    """RGB [0, 1] tensor (1, 3, H, W), upright and in sRGB; ``size`` sets the long side, keeping the aspect ratio."""
    from fststyle.errors import UserError

    try:
        image = fit_long_side(open_rgb(path), size)
    except Exception as e:  # noqa: BLE001 - unreadable pictures fail in many ways
        raise UserError(f"cannot read image {str(path)!r}: {e}") from None
    return from_pil(image).contiguous()


def to_pil(picture) -> Image.Image:
    """A PIL image of a (3, H, W) or (1, 3, H, W) [0, 1] tensor, or of an (H, W, 3) uint8 array."""
    import numpy as np

    if hasattr(picture, "detach"):  # a tensor
        tensor = picture.detach().float().cpu()
        tensor = tensor[0] if tensor.ndim == 4 else tensor
        picture = (tensor.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(picture)


def from_pil(image: Image.Image):
    """(1, 3, H, W) float [0, 1] tensor of a PIL image (converted to RGB)."""
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def save_image(picture, path, exif: bytes | None = None, quality: int = 95) -> None:
    """A tensor, uint8 array or PIL image written atomically (the format from the suffix); ``exif`` (the
    photo's, orientation reset) is kept where the format holds EXIF."""
    from pathlib import Path

    from fststyle.atomic import atomic_path

    path = Path(path)
    image = picture if isinstance(picture, Image.Image) else to_pil(picture)
    suffix = path.suffix.lower()
    options = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    if exif and suffix in (".jpg", ".jpeg", ".webp", ".png", ".tif", ".tiff"):
        options["exif"] = exif
    with atomic_path(path) as tmp:  # the temp name keeps the suffix: PIL picks the format by it
        image.save(tmp, **options)
