import hashlib

import pytest
import torch

from fststyle import style as style_mod
from fststyle.errors import UserError
from fststyle.style import load_style, resolve_image
from tests.conftest import FakeResponse

URL = "https://raw.githubusercontent.com/jcjohnson/fast-neural-style/master/images/styles/starry_night.jpg"


def serve(monkeypatch, payload: bytes):
    """Mock the transport only: torch.hub's real download code, urlopen answering with local bytes."""
    calls = []

    def urlopen(request, *args, **kwargs):
        calls.append(request.full_url)
        return FakeResponse(payload)

    monkeypatch.setattr(torch.hub, "urlopen", urlopen)
    return calls


def test_url_is_downloaded_once_into_the_cache_and_verified(monkeypatch, starry_night, tmp_path):
    payload = starry_night.read_bytes()
    calls = serve(monkeypatch, payload)
    sha = hashlib.sha256(payload).hexdigest()
    path = resolve_image(URL, sha)
    assert path == tmp_path / "cache" / "styles" / "starry_night.jpg" and path.read_bytes() == payload
    assert resolve_image(URL, sha) == path and calls == [URL]  # cached: no second download
    image = load_style(URL, sha, size=128)
    assert image.shape[0] == 1 and max(image.shape[-2:]) == 128


def test_checksum_mismatch_is_refused_and_not_cached(monkeypatch, tmp_path):
    serve(monkeypatch, b"something else")
    with pytest.raises(UserError, match="expected"):
        resolve_image(URL, "0" * 64)
    assert not any((tmp_path / "cache" / "styles").iterdir())


def test_no_network_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", offline)
    with pytest.raises(UserError, match="style.image=PATH"):
        resolve_image(URL, None)


def test_local_path_skips_download(monkeypatch, starry_night):
    monkeypatch.setattr(style_mod.torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    assert resolve_image(str(starry_night)) == starry_night
    with pytest.raises(UserError, match="no such file"):
        resolve_image("/nonexistent/style.jpg")
