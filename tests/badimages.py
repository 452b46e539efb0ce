"""A folder of real-world broken and odd training images, made in a temp dir (nothing from ../shared)."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# name -> what decoding must do with it: None = decodes, else the skip reason
EXPECTED = {
    "good_0.jpg": None,
    "good_1.jpg": None,
    "good_2.jpg": None,
    "good_3.png": None,
    "good_4.jpg": None,
    "good_5.jpg": None,
    "grayscale.jpg": None,
    "cmyk.jpg": None,
    "rgba.png": None,
    "palette.png": None,
    "palette_transparent.png": None,
    "gray16.png": None,
    "rgb16.png": None,
    "tiny.png": None,
    "thin.jpg": None,
    "truncated.jpg": "truncated or corrupt",
    "zero_bytes.jpg": "empty file",
    "text.png": "not an image",
    "html.jpeg": "not an image",
    "png_bad_crc_header.png": "truncated or corrupt",
    "png_bad_crc_data.png": "truncated or corrupt",
    "bomb.png": "too large (decompression bomb)",
}
BAD = {name: reason for name, reason in EXPECTED.items() if reason}


def photo(w: int, h: int, seed: int) -> Image.Image:
    """A smooth colour gradient with noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


def photo_folder(folder: Path, count: int, w: int = 96, h: int = 80) -> Path:
    """``count`` photos, 0.jpg, 1.jpg, ... in ``folder`` (created)."""
    folder.mkdir(parents=True)
    for i in range(count):
        photo(w, h, i).save(folder / f"{i}.jpg")
    return folder


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16_rgb(w: int, h: int, value: int) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so by hand)."""
    row = b"\0" + np.full((w, 3), value, dtype=">u2").tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(row * h)) + png_chunk(b"IEND", b"")


def bomb_png(side: int = 20000) -> bytes:
    """A genuine, complete 1-bit PNG of side x side pixels (400 Mpx > 2x Pillow's limit), ~60 kB on disk."""
    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def make_bad_folder(root: Path, only_bad: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}

    def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        return buf.getvalue()

    for i in range(6):
        ext = "png" if i == 3 else "jpg"
        files[f"good_{i}.{ext}"] = encoded(photo(120 + 10 * i, 96, i), "PNG" if ext == "png" else "JPEG")
    files["grayscale.jpg"] = encoded(photo(100, 90, 10).convert("L"), "JPEG")
    files["cmyk.jpg"] = encoded(photo(100, 90, 11).convert("CMYK"), "JPEG")
    rgba = photo(100, 90, 12).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: must come out white, not whatever colour hides under alpha
    files["rgba.png"] = encoded(rgba, "PNG")
    files["palette.png"] = encoded(photo(100, 90, 13).convert("P"), "PNG")
    pal = photo(100, 90, 14).convert("P")
    files["palette_transparent.png"] = encoded(pal, "PNG", transparency=0)
    files["gray16.png"] = encoded(Image.fromarray(np.full((90, 100), 32896, dtype=np.uint16)), "PNG")  # 50% grey
    files["rgb16.png"] = png16_rgb(100, 90, 32896)
    files["tiny.png"] = encoded(photo(5, 3, 15), "PNG")
    files["thin.jpg"] = encoded(photo(2000, 4, 16), "JPEG")
    full = encoded(photo(200, 160, 17), "JPEG")
    files["truncated.jpg"] = full[: len(full) // 2]
    files["zero_bytes.jpg"] = b""
    files["text.png"] = b"this is not a picture\n" * 10
    files["html.jpeg"] = b"<html><body>404 Not Found</body></html>"
    files["bomb.png"] = bomb_png()
    png = bytearray(encoded(photo(100, 90, 18), "PNG"))
    header_crc = 8 + 4 + 4 + 13  # signature, IHDR length and type, IHDR data: its CRC follows
    png[header_crc: header_crc + 4] = b"\0\0\0\0"
    files["png_bad_crc_header.png"] = bytes(png)
    png = bytearray(encoded(photo(100, 90, 19), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 40] ^= 0xFF  # one flipped byte inside the pixel data: its chunk's CRC no longer matches
    files["png_bad_crc_data.png"] = bytes(png)
    for name, data in files.items():
        if only_bad and name not in BAD:
            continue
        (root / name).write_bytes(data)
    return root
