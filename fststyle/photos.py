"""Pictures as cameras and phones store them: turned by their EXIF orientation, in a colour profile.

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
