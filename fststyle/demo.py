"""``fststyle-demo`` / ``python -m fststyle.demo``: a local web page to try the styles (Gradio).

    python -m fststyle.demo [port=7860] [host=127.0.0.1] [ckpt=FILE_OR_NAME] [exports=exports] [data=PHOTOS_DIR] [vgg=PATH]

The page: a photo from upload, drag-and-drop, the clipboard or the webcam (also live); a gallery of the styles,
each thumbnail the user's own photo in that style; strength, preserve colour, output size; a blend of two styles
for a multi-style file; a before/after slider and a full-resolution download; your own painting, previewed by the
optimisation method and trained for real in the background. The stylize action is the API endpoint ``/stylize``
(photo, style, strength, preserve_color, size) for ``gradio_client``. It binds 127.0.0.1 by default and fetches
nothing from elsewhere: no fonts, scripts or analytics.

The entry layer: options are parsed here (``key=value``, as the other commands), the work is the library's.
"""
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fststyle.errors import UserError, exit_code, whole_number

MAX_PIXELS = 40_000_000  # a larger upload is refused with a message (a 4K frame is 8.3 MP)
THUMB = 160  # long side of the gallery's thumbnails
LIVE = 320  # long side of webcam frames in live mode
PREVIEW = 192  # long side of the optimisation method's preview of your own painting
PREVIEW_ITERATIONS = 40
# Gradio stretches a gallery of few items to the page's width whatever its ``columns`` (gradio-app/gradio#12052):
# two styles became two 600-px crops of their thumbnails. The grid keeps its columns.
GALLERY_CSS = "#gallery .grid-container { grid-template-columns: repeat(7, minmax(0, 1fr)) !important; }"
OPTIONS = ("port", "host", "ckpt", "exports", "data", "steps", "vgg", "styles")


@dataclass(frozen=True)
class DemoSettings:
    port: int = 7860
    host: str = "127.0.0.1"
    ckpt: str | None = None  # one more style file (or shipped name) shown first
    exports: str = "exports"  # the user's own .safetensors exports, listed in the gallery
    data: str | None = None  # photos to train your own painting on (data=folder data.path=)
    steps: int = 600  # training steps of "train this painting"
    vgg: str = "caffe"  # the VGG16 weights of the preview and the training: caffe (downloaded once) or a PATH
    styles: str | None = None  # only these shipped styles (comma-separated names); default all


def parse(argv: list[str]) -> DemoSettings:
    values: dict = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise UserError(f"{arg}: not an option of fststyle-demo; options: {', '.join(f'{o}=' for o in OPTIONS)}")
        values[key] = value
    for key in ("port", "steps"):
        if key in values:
            try:
                values[key] = int(values[key])
            except ValueError:
                pass
            whole_number(key, values[key], 1)
    if values.get("port", 7860) > 65535:
        raise UserError(f"port must be 1..65535, got {values['port']}")
    return DemoSettings(**values)


@dataclass
class Catalogue:
    """The styles the page offers: name -> style file, with the multi-style files' own styles."""

    files: dict[str, Path] = field(default_factory=dict)
    multi: dict[str, list[str]] = field(default_factory=dict)  # name -> its styles (multi-style files)
    lite: dict[str, Path] = field(default_factory=dict)  # name -> its lite twin (NAME_lite), what live mode runs
    skipped: list[str] = field(default_factory=list)  # files in exports/ that are not style files

    @classmethod
    def build(cls, settings: DemoSettings) -> "Catalogue":
        from fststyle import zoo
        from fststyle.stylefile import read_meta

        cat = cls()
        if settings.ckpt:
            path, name = zoo.resolve_model(settings.ckpt)
            cat.add(name, path, read_meta(path).style_names)  # a bad ckpt= is an error line before the page starts
        wanted = [n for n in (settings.styles or "").split(",") if n] or zoo.names()
        unknown = sorted(set(wanted) - set(zoo.names()))
        if unknown:
            raise UserError(f"styles={unknown[0]}: not a shipped style; shipped: {', '.join(zoo.names())}")
        for name in wanted:
            twin = name.removesuffix("_lite")
            if twin != name and twin in zoo.names():  # the same style, faster: live mode's, not a gallery entry
                cat.lite[twin] = zoo.ZOO_DIR / f"{name}.safetensors"
            else:
                cat.add(name, zoo.ZOO_DIR / f"{name}.safetensors", [])
        cat.scan(Path(settings.exports))
        return cat

    def add(self, name: str, path: Path, styles: list[str]) -> None:
        self.files.setdefault(name, path)
        if styles:
            self.multi[name] = styles

    def scan(self, folder: Path) -> None:
        from fststyle.stylefile import read_meta

        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            try:
                self.add(path.stem, path, read_meta(path).style_names)
            except UserError as e:
                self.skipped.append(f"{path.name}: {e}")


class Styles:
    """One loaded network per (file, style), each behind the default backend (OpenVINO on a CPU)."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.engines: dict = {}
        self.lock = threading.Lock()

    def engine(self, name: str, mix: dict | None = None, live: bool = False):
        """``live``: the style's lite twin where one ships (the webcam's frame rate), else the style itself."""
        from fststyle.infer.engine import Engine, InferSettings

        if name not in self.catalogue.files:
            raise UserError(f"no style named {name!r}")
        styles = self.catalogue.multi.get(name)
        choice = (mix or styles[0]) if styles else None
        path = self.catalogue.lite.get(name, self.catalogue.files[name]) if live and not styles else self.catalogue.files[name]
        key = (str(path), repr(sorted(choice.items())) if isinstance(choice, dict) else choice)
        with self.lock:
            if key not in self.engines:
                self.engines[key] = Engine(InferSettings(tile="auto"), path, choice)
            return self.engines[key]

    def stylize(self, photo, name: str, strength: float = 1.0, preserve_color: bool = False, size: int | None = None,
                mix: dict | None = None, live: bool = False):
        """(H, W, 3) uint8 -> the same, stylized; ``size``: the long side (None keeps the photo's)."""
        import numpy as np

        from fststyle.infer.color import finish

        photo = fit(photo, size)
        raw = self.engine(name, mix, live)(photo[None])[0]
        if strength >= 1 and not preserve_color:
            return raw
        content = photo.transpose(2, 0, 1)[None].astype(np.float32) / 255
        styled = raw.transpose(2, 0, 1)[None].astype(np.float32) / 255
        out = finish(styled, content, preserve_color, float(strength))
        return (out[0].transpose(1, 2, 0) * 255 + 0.5).clip(0, 255).astype(np.uint8)


def fit(photo, size: int | None):
    """An (H, W, 3) uint8 photo checked and fitted to ``size`` on its long side (Lanczos); one message when too big."""
    import numpy as np
    from PIL import Image

    if photo is None:
        raise UserError("no photo: upload one, paste it, or take one with the webcam")
    photo = np.asarray(photo)
    if photo.ndim == 2:
        photo = np.stack([photo] * 3, -1)
    photo = photo[..., :3]
    if photo.shape[0] * photo.shape[1] > MAX_PIXELS:
        raise UserError(f"the photo is {photo.shape[1]}x{photo.shape[0]}: more than {MAX_PIXELS // 1_000_000} MP; "
                        "use fststyle-infer for pictures this large (it stylizes them in pieces)")
    if size and max(photo.shape[:2]) != size:
        from fststyle.images import fit_long_side

        photo = np.asarray(fit_long_side(Image.fromarray(photo.astype(np.uint8)), int(size)))
    return np.ascontiguousarray(photo, dtype=np.uint8)


class Training:
    """``Train this painting``: a real ``fststyle-train`` run in the background (the custom recipe), its progress
    read from its output; the export lands in the gallery's exports folder."""

    def __init__(self, settings: DemoSettings):
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self.name = ""
        self.lines: list[str] = []

    def start(self, painting: str) -> str:
        if self.process is not None and self.process.poll() is None:
            return f"already training {self.name}: {self.status()}"
        if not self.settings.data:
            return "training needs photos to learn from: start the page with data=FOLDER (any folder of photos)"
        self.name = Path(painting).stem
        command = [sys.executable, "-c", "from fststyle.cli import train_main; train_main()", f"style.image={painting}",
                   "data=folder", f"data.path={self.settings.data}", f"loss.weights={self.settings.vgg}", "logger=csv",
                   f"trainer.max_steps={self.settings.steps}",
                   f"export_dir={self.settings.exports}", f"hydra.run.dir=outputs/demo_{self.name}_{int(time.time())}"]
        self.lines = []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        return f"training {self.name}: started ({self.settings.steps} steps)"

    def _read(self) -> None:
        for chunk in iter(lambda: self.process.stdout.read(256), ""):
            self.lines = (self.lines + chunk.replace("\r", "\n").splitlines())[-50:]

    def status(self) -> str:
        if self.process is None:
            return "no training yet"
        progress = next((line for line in reversed(self.lines) if "step " in line and "/" in line), "starting")
        code = self.process.poll()
        if code is None:
            return f"training {self.name}: {progress.strip()[:160]}"
        if code == 0:
            return f"{self.name} is trained: it is in the gallery (exports/{self.name}.safetensors)"
        error = next((line for line in reversed(self.lines) if line.startswith("error:")), f"exit code {code}")
        return f"training {self.name} failed: {error}"


STARTING_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="1">
<title>fststyle (starting)</title></head><body style="font-family: system-ui, sans-serif; margin: 3em">
<h2>fststyle is starting</h2><p>The page opens by itself in a few seconds.</p></body></html>"""


class StartingPage:
    """Answers at the page's address while Gradio imports (seconds on a small CPU) with a page that reloads
    itself until the real one is up (HTTP 503, Retry-After: API clients wait too). Binding it first also
    reports a port already in use before that wait."""

    def __init__(self, host: str, port: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Starting(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(503)
                for key, value in (("Content-Type", "text/html; charset=utf-8"), ("Retry-After", "1"),
                                   ("Content-Length", str(len(STARTING_PAGE))), ("Cache-Control", "no-store")):
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(STARTING_PAGE)

            do_HEAD = do_POST = do_GET

            def log_message(self, *args):
                pass

        try:
            self.server = ThreadingHTTPServer((host, port), Starting)
        except OSError as e:
            raise UserError(f"port={port}: cannot listen on {host}:{port} ({e.strerror}); choose another with port=N") from None
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def build(settings: DemoSettings, catalogue: "Catalogue | None" = None):
    """The page (a ``gradio.Blocks``); Gradio is imported here, so ``fststyle-infer`` never pays for it."""
    catalogue = catalogue or Catalogue.build(settings)  # a bad ckpt= is reported before Gradio's import
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    styles = Styles(catalogue)
    training = Training(settings)
    names = list(catalogue.files)

    def stylize(photo, style, strength, preserve_color, size):
        try:
            return styles.stylize(photo, style, strength, preserve_color, int(size) if size else None)
        except UserError as e:
            raise gr.Error(str(e)) from None

    def stylize_pair(photo, style, strength, preserve_color, size, second, ratio):
        mix = None
        if style in catalogue.multi and second and second != style:
            mix = {style: 1 - ratio, second: ratio}
        try:
            photo = fit(photo, int(size) if size else None)  # once: the result and the before/after share it
            out = styles.stylize(photo, style, strength, preserve_color, None, mix)
            return out, (photo, out)
        except UserError as e:
            raise gr.Error(str(e)) from None

    def thumbnails(photo):
        if photo is None:
            return []
        small = fit(photo, THUMB)
        return [(styles.stylize(small, name), name) for name in names]

    def pick(evt: gr.SelectData):
        return names[evt.index]

    def blend_choices(style):
        own = catalogue.multi.get(style, [])
        return gr.update(choices=own, value=own[-1] if own else None, visible=bool(own)), gr.update(visible=bool(own))

    def live(frame, style):
        if frame is None:
            return None
        return styles.stylize(frame, style, size=LIVE, live=True)

    def preview(painting, photo, progress=gr.Progress()):
        if painting is None:
            raise gr.Error("upload a painting first")
        return optimize_preview(painting, photo, settings.vgg, progress)

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title="fststyle", analytics_enabled=False) as page:
        gr.Markdown("## fststyle — fast neural style transfer\nYour photos never leave this computer.")
        with gr.Row():
            photo = gr.Image(label="photo", sources=["upload", "webcam", "clipboard"], type="numpy", elem_id="photo")
            with gr.Column():
                style = gr.Dropdown(names, value=names[0] if names else None, label="style", elem_id="style")
                strength = gr.Slider(0, 1, value=1.0, step=0.05, label="strength", elem_id="strength")
                preserve = gr.Checkbox(False, label="preserve colour", elem_id="preserve")
                size = gr.Slider(256, 2048, value=1024, step=64, label="output size (long side, px)", elem_id="size")
                second = gr.Dropdown([], label="blend with (multi-style files)", visible=False, elem_id="second")
                ratio = gr.Slider(0, 1, value=0.5, step=0.05, label="blend ratio", visible=False, elem_id="ratio")
                go = gr.Button("Stylize", variant="primary", elem_id="go")
        gallery = gr.Gallery(label="styles: your photo in each (click one to choose it)", columns=7, height=220,
                             allow_preview=False, object_fit="contain", elem_id="gallery")
        with gr.Row():
            result = gr.Image(label="stylized", type="numpy", format="png", buttons=["download"], interactive=False, elem_id="result")
            compare = gr.ImageSlider(label="before / after", type="numpy", interactive=False, elem_id="compare")
        with gr.Accordion("Live webcam", open=False):
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam")
                cam_out = gr.Image(label="live", type="numpy")
        with gr.Accordion("Your own painting", open=False):
            with gr.Row():
                painting = gr.Image(label="painting", type="filepath", sources=["upload", "clipboard"], elem_id="painting")
                preview_out = gr.Image(label=f"quick preview (optimisation method, {PREVIEW} px)", type="numpy")
            with gr.Row():
                preview_go = gr.Button("Preview", elem_id="preview")
                train_go = gr.Button("Train this painting", elem_id="train")
            train_status = gr.Textbox(label="training", value=training.status(), interactive=False)
        if catalogue.skipped:
            gr.Markdown("Not style files, skipped: " + "; ".join(catalogue.skipped))

        api = gr.Button(visible=False)  # the API endpoint: exactly (photo, style, strength, preserve_color, size)
        api.click(stylize, [photo, style, strength, preserve, size], result, api_name="stylize")
        go.click(stylize_pair, [photo, style, strength, preserve, size, second, ratio], [result, compare], api_name=False)
        photo.upload(thumbnails, photo, gallery, api_name=False)
        gallery.select(pick, None, style, api_name=False)
        style.change(blend_choices, style, [second, ratio], api_name=False)
        cam.stream(live, [cam, style], cam_out, api_name=False, stream_every=0.1)
        preview_go.click(preview, [painting, photo], preview_out, api_name=False)
        train_go.click(lambda p: training.start(p) if p else "upload a painting first", painting, train_status, api_name=False)
        gr.Timer(2.0).tick(training.status, None, train_status, api_name=False)
    page.fststyle_theme = theme
    return page


def optimize_preview(painting: str, photo, vgg: str, progress) -> "object":
    """A small quick Gatys et al. stylization of the photo (or a grey card) in the uploaded painting."""
    import numpy as np
    import torch

    from fststyle.gatys import OptimizeSettings, build_gatys_loss, optimize_image
    from fststyle.images import load_image

    grey = np.full((PREVIEW, PREVIEW, 3), 128, np.uint8)
    content = torch.from_numpy(np.array(fit(photo if photo is not None else grey, PREVIEW)))
    content = content.permute(2, 0, 1)[None].float().contiguous() / 255  # contiguous: L-BFGS views the pixels flat
    try:
        style = load_image(painting, PREVIEW * 2)
    except UserError as e:
        import gradio as gr

        raise gr.Error(str(e)) from None
    # infer.py method=optimize's defaults (conf/loss/gatys.yaml, conf/layers/paper.yaml): Gatys et al.'s layers
    loss = build_gatys_loss({"network": "auto", "weights": vgg, "pooling": "max", "preprocessing": "auto",
                             "content_layers": {"relu4_2": 1.0},
                             "style_layers": {n: 1.0 for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")},
                             "content_weight": 1.0, "style_weight": 50.0, "tv_weight": 0.0, "normalization": "paper"})

    def step(i: int, image) -> None:
        progress(i / PREVIEW_ITERATIONS, desc="preview")

    image, _ = optimize_image(loss, content, style, OptimizeSettings(iterations=PREVIEW_ITERATIONS), step, progress=False)
    return (image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def serve(settings: DemoSettings, block: bool = True):
    catalogue = Catalogue.build(settings)
    starting = StartingPage(settings.host, settings.port)
    try:
        page = build(settings, catalogue)
    finally:
        starting.close()
    page.queue(default_concurrency_limit=2)
    _, url, _ = page.launch(server_name=settings.host, server_port=settings.port, prevent_thread_lock=True, quiet=True,
                            show_error=False, theme=page.fststyle_theme, css=GALLERY_CSS, footer_links=["api"])
    print(f"fststyle demo on {url} (Ctrl-C stops it)", flush=True)
    if block:
        page.block_thread()
    return page


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 120, starting_page: bool = False) -> float:
    """Seconds until ``url`` serves the page (a started ``fststyle-demo`` process), or with ``starting_page`` until
    it first answers at all; RuntimeError with its output if it exits or ``timeout`` passes first. For the page's
    tests and bench/demo_latency.py."""
    import urllib.error
    import urllib.request

    start = time.perf_counter()
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return time.perf_counter() - start
        except urllib.error.HTTPError:  # the starting page: it answers, the page is not up yet
            if starting_page:
                return time.perf_counter() - start
        except OSError:
            pass
        if process.poll() is not None or time.perf_counter() - start > timeout:
            process.kill()
            output = process.communicate()[0] if process.stdout else ""
            raise RuntimeError(f"the demo did not start: {str(output)[-3000:]}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--help"], ["-h"]):
        print(__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
        return 0
    return exit_code(lambda: serve(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
