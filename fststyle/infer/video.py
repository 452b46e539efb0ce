"""Stylize a video with PyAV (its wheels ship their own ffmpeg): same frame rate, audio kept.

Audio is copied packet by packet when the output container accepts the codec, and re-encoded
(AAC for mp4/mov, Opus for webm) when it does not; GIFs have no audio.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from fststyle.atomic import atomic_path
from fststyle.errors import UserError, first_line

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v"}
VIDEO_CODECS = {".webm": ("libvpx-vp9", "yuv420p"), ".gif": ("gif", "rgb8")}  # others: H.264
AUDIO_COPYABLE = {".webm": {"opus", "vorbis"}, ".gif": set()}
AUDIO_REENCODE = {".webm": "libopus", ".gif": None}


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _resize(frame, size: int | None):
    if not size:
        return frame
    scale = size / max(frame.width, frame.height)
    return frame.reformat(width=max(2, round(frame.width * scale / 2) * 2), height=max(2, round(frame.height * scale / 2) * 2))


def stylize_video(
    src: Path,
    dst: Path,
    stylize: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 1,
    size: int | None = None,
    progress: bool = True,
) -> int:
    """Write ``dst`` with every frame of ``src`` passed through ``stylize`` ((N, H, W, 3) uint8 -> same); returns frames."""
    import av

    try:
        source = av.open(str(src))
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"cannot read video {str(src)!r}: {e}") from None
    try:
        return _stylize_video(av, source, src, dst, stylize, batch_size, size, progress)
    except av.FFmpegError as e:
        raise UserError(f"cannot stylize video {str(src)!r}: {first_line(e)}; nothing written") from None


def _stylize_video(av, source, src: Path, dst: Path, stylize, batch_size: int, size: int | None, progress: bool) -> int:
    from tqdm import tqdm

    suffix = dst.suffix.lower()
    with atomic_path(dst) as tmp:  # a failed or interrupted video leaves no partial file
        frames = 0
        with source, av.open(str(tmp), "w") as sink:
            if not source.streams.video:
                raise UserError(f"{src}: no video stream")
            vin = source.streams.video[0]
            vin.thread_type = "AUTO"
            rate = vin.average_rate or vin.guessed_rate or 25
            codec, pix_fmt = VIDEO_CODECS.get(suffix, ("libx264", "yuv420p"))
            vout = sink.add_stream(codec, rate=rate)
            vout.pix_fmt = pix_fmt
            width, height = vin.codec_context.width, vin.codec_context.height
            if size:
                scale = size / max(width, height)
                width, height = round(width * scale / 2) * 2, round(height * scale / 2) * 2
            vout.width, vout.height = width // 2 * 2, height // 2 * 2  # yuv420p wants even sizes
            if codec == "libx264":
                vout.options = {"crf": "18", "preset": "veryfast"}  # 1.4x faster than medium on stylized frames, no larger (docs/BENCHMARKS.md)

            ain = source.streams.audio[0] if source.streams.audio else None
            aout, resampler = None, None
            if ain is not None and AUDIO_REENCODE.get(suffix, "aac") is not None:
                if ain.codec_context.name in AUDIO_COPYABLE.get(suffix, {"aac", "mp3", "alac", "opus", "ac3"}):
                    aout = sink.add_stream_from_template(ain)
                else:
                    aout = sink.add_stream(AUDIO_REENCODE.get(suffix, "aac"), rate=ain.codec_context.sample_rate or 48000)
                    resampler = True

            bar = tqdm(total=vin.frames or None, unit="frame", desc=src.name, disable=not progress)
            batch: list[np.ndarray] = []

            def flush():
                nonlocal frames
                if not batch:
                    return
                out = stylize(np.stack(batch))
                for image in out:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: vout.height, : vout.width]), format="rgb24")
                    for packet in vout.encode(frame):
                        sink.mux(packet)
                frames += len(batch)
                bar.update(len(batch))
                batch.clear()

            streams = [s for s in (vin, ain) if s is not None]
            damaged, cut = 0, None
            packets = source.demux(streams)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError as e:  # the container itself is broken from here on
                    cut = first_line(e)
                    break
                if packet.stream is vin:
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError:  # one damaged packet: its frames are lost, the rest goes on
                        damaged += 1
                        continue
                    for frame in decoded:
                        batch.append(_resize(frame, size).to_ndarray(format="rgb24"))
                        if len(batch) >= batch_size:
                            flush()
                elif aout is not None:
                    if packet.dts is None:
                        continue
                    if resampler is None:
                        packet.stream = aout
                        sink.mux(packet)
                    else:
                        for aframe in packet.decode():
                            aframe.pts = None
                            for p in aout.encode(aframe):
                                sink.mux(p)
            flush()
            if frames == 0:
                raise UserError(f"{src}: no video frame could be decoded (damaged or empty); nothing written")
            for packet in vout.encode():
                sink.mux(packet)
            if resampler is not None:
                for packet in aout.encode():
                    sink.mux(packet)
            bar.close()
    expected = vin.frames or 0
    if damaged:
        warn(f"{src.name}: skipped {damaged} damaged packet(s)")
    if cut or (expected and frames < expected):
        warn(f"{src.name}: wrote {frames} of {expected or '?'} frames: the file is damaged or ends early" + (f" ({cut})" if cut else ""))
    return frames


def warn(line: str) -> None:
    import sys

    print(f"warning: {line}", file=sys.stderr, flush=True)


def read_frames(src: Path, size: int | None = None, limit: int = 48) -> np.ndarray:
    """The first ``limit`` frames of a video as (N, H, W, 3) uint8 (the evaluator's flicker measure)."""
    import av

    try:
        with av.open(str(src)) as source:
            if not source.streams.video:
                raise UserError(f"{src}: no video stream")
            frames = []
            for frame in source.decode(video=0):
                frames.append(_resize(frame, size).to_ndarray(format="rgb24"))
                if len(frames) >= limit:
                    break
    except (av.FFmpegError, OSError) as e:
        raise UserError(f"cannot read video {str(src)!r}: {e}") from None
    if len(frames) < 2:
        raise UserError(f"{src}: fewer than 2 frames")
    return np.stack(frames)
