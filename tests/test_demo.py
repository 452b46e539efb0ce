"""The page (fststyle/demo.py) in a real browser, Debian's chromium driven by Playwright, and its /stylize API
through gradio_client. Offline: every request the page makes must go to the page's own server."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fststyle.demo import STARTING_PAGE as STARTING
from fststyle.demo import DemoSettings, parse, wait_until_serving
from fststyle.errors import UserError

gradio = pytest.importorskip("gradio")
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STYLES = "starry_night,wave"


def download(page, folder: Path) -> Image.Image:
    """The result at full resolution, through the page's own download button."""
    folder.mkdir(parents=True, exist_ok=True)
    with page.expect_download() as started:
        page.locator("#result button[aria-label=Download]").click()
    path = folder / started.value.suggested_filename
    started.value.save_as(path)
    return Image.open(path).convert("RGB")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The demo as a user starts it; yields (url, (seconds until it first answered, until the page was up))."""
    port, cache = free_port(), tmp_path_factory.mktemp("cache")
    env = {**os.environ, "FSSTYLE_CACHE": str(cache), "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "fststyle.demo", f"port={port}", f"styles={STYLES}",
                             f"exports={tmp_path_factory.mktemp('exports')}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        first = wait_until_serving(url, proc, starting_page=True)
        answered = (first, first + wait_until_serving(url, proc))
    except RuntimeError as e:
        pytest.fail(str(e))
    yield url, answered
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def photo(tmp_path) -> Path:
    shared = ROOT.parent / "shared" / "content" / "chicago.jpg"
    if shared.exists():
        return shared
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(path)
    return path


def test_options_are_checked():
    assert parse(["port=8000", "styles=wave"]) == DemoSettings(port=8000, styles="wave")
    for bad, message in [("port=abc", "port must be a whole number"), ("port=70000", "port must be 1..65535"),
                         ("colour=red", "not an option of fststyle-demo")]:
        with pytest.raises(UserError, match=message):
            parse([bad])


def test_bad_options_and_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a style")
    for args in (["port=abc"], [f"ckpt={bad}"], ["styles=nosuch"]):
        proc = subprocess.run([sys.executable, "-m", "fststyle.demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_port_in_use_is_one_line_before_the_wait(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "fststyle.demo", f"port={port}", "styles=wave"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: port={port}: cannot listen") and proc.stderr.count("\n") == 1, proc.stderr


def test_the_starting_page_answers_while_gradio_loads():
    import urllib.error
    import urllib.request

    from fststyle.demo import StartingPage

    port = free_port()
    starting = StartingPage("127.0.0.1", port)
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert e.value.code == 503 and e.value.headers["Retry-After"] == "1"
        assert b"fststyle is starting" in e.value.read() and "refresh" in STARTING.decode()
    finally:
        starting.close()
    with socket.socket() as again:  # the port is free for Gradio the moment it closes
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


def test_stylize_api_answers_gradio_client(server, photo, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = server
    client = Client(url, verbose=False)
    result = client.predict(handle_file(str(photo)), "wave", 1.0, False, 256, api_name="/stylize")
    out = Image.open(result)
    assert max(out.size) == 256 and np.asarray(out).std() > 5
    half = np.asarray(Image.open(client.predict(handle_file(str(photo)), "wave", 0.5, False, 256, api_name="/stylize")), dtype=float)
    full, plain = np.asarray(out, dtype=float), np.asarray(Image.open(photo).convert("RGB").resize(out.size, Image.LANCZOS), dtype=float)
    assert np.abs(half - (plain + full) / 2).mean() < 6  # strength 0.5: halfway between the photo and the style
    with pytest.raises(Exception, match="nosuch"):  # a clear message naming it, never a traceback
        client.predict(handle_file(str(photo)), "nosuch", 1.0, False, 256, api_name="/stylize")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_in_a_real_browser(server, photo, tmp_path):
    from playwright.sync_api import sync_playwright

    url, answered = server
    shots = Path(os.environ.get("FSSTYLE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    print(f"the page answered {answered[0]:.1f} s after the command started, and was up after {answered[1]:.1f} s")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)  # a fresh temporary profile
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        hosts = []
        page.on("request", lambda r: hosts.append(r.url.split("/")[2]) if "://" in r.url and not r.url.startswith("data:") else None)
        page.goto(url)
        page.wait_for_selector("#go")
        page.locator("#photo input[type=file]").set_input_files(str(photo))
        page.wait_for_selector("#gallery img", timeout=180_000)  # the photo in every style
        assert page.locator("#gallery img").count() == len(STYLES.split(","))
        assert page.locator("#gallery img").first.bounding_box()["width"] < 250  # thumbnails, not page-wide crops
        page.locator("#gallery img").nth(1).click()  # pick wave from the gallery
        page.wait_for_function("document.querySelector('#style input').value === 'wave'")
        page.locator("#go").click()
        result = page.locator("#result img")
        result.wait_for(timeout=180_000)
        loaded = "(src) => {const i = document.querySelector('#result img'); return i && i.src !== src && i.complete && i.naturalWidth > 0}"
        page.wait_for_function(loaded, arg="", timeout=180_000)
        page.screenshot(path=str(shots / "demo_stylized.png"), full_page=True)
        strong = download(page, tmp_path / "strong")

        page.locator("#strength input[type=number]").fill("0.3")
        page.locator("#strength input[type=number]").press("Enter")
        first = result.get_attribute("src")
        page.locator("#go").click()
        page.wait_for_function(loaded, arg=first, timeout=180_000)
        page.screenshot(path=str(shots / "demo_strength.png"), full_page=True)
        light = download(page, tmp_path / "light")
        browser.close()
    assert max(strong.size) == max(light.size) == 1024  # the full output size, not the page's preview
    original = np.asarray(Image.open(photo).convert("RGB").resize(strong.size, Image.LANCZOS), dtype=float)
    distance = {name: np.abs(np.asarray(im, dtype=float) - original).mean() for name, im in (("strong", strong), ("light", light))}
    assert distance["light"] < 0.5 * distance["strong"], distance  # strength 0.3 keeps far more of the photo
    assert set(hosts) == {url.split("/")[2]}, sorted(set(hosts))  # nothing fetched from elsewhere
    for name in ("demo_stylized.png", "demo_strength.png"):
        assert Image.open(shots / name).size[0] >= 1000


def test_own_painting_preview_is_a_picture(tmp_path):
    """The optimisation method's quick preview of an uploaded painting (random VGG weights: the pipe, not the look)."""
    from fststyle.demo import PREVIEW, optimize_preview

    rng = np.random.default_rng(1)
    painting = tmp_path / "painting.png"
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(painting)
    photo = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    steps = []
    out = optimize_preview(str(painting), photo, "random", lambda fraction, desc: steps.append(fraction))
    assert out.dtype == np.uint8 and max(out.shape[:2]) == PREVIEW and out.shape[2] == 3
    assert 1 < out.std() < 120 and steps and steps[-1] == pytest.approx(1.0)


def test_live_mode_runs_the_lite_twin_and_the_gallery_lists_the_style_once(tmp_path, monkeypatch):
    from fststyle import zoo
    from fststyle.demo import Catalogue, Styles
    from fststyle.nets.transformer import TransformerConfig, TransformerNet
    from fststyle.stylefile import export_transformer

    monkeypatch.setenv("FSSTYLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path / "zoo")
    for name, config in (("starry_night", TransformerConfig(base_channels=4, residual_blocks=1)),
                         ("starry_night_lite", TransformerConfig(base_channels=2, residual_blocks=1, end_kernel=3))):
        export_transformer(TransformerNet(config), zoo.ZOO_DIR / f"{name}.safetensors", {"name": name})
    catalogue = Catalogue.build(DemoSettings(exports=str(tmp_path / "none")))
    assert list(catalogue.files) == ["starry_night"]
    styles = Styles(catalogue)
    assert styles.engine("starry_night").ckpt.name == "starry_night.safetensors"
    assert styles.engine("starry_night", live=True).ckpt.name == "starry_night_lite.safetensors"
    frame = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    assert styles.stylize(frame, "starry_night", size=64, live=True).shape == (48, 64, 3)
