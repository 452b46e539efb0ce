"""Shared fixtures. Tests never touch the network; ../shared data is used when present."""
import email.message
import io
import os
from pathlib import Path

import pytest

import fststyle  # noqa: F401 - registers the OmegaConf resolvers conf/ uses (style.name)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COCO = SHARED / "data" / "coco256"
VGG16_CAFFE = SHARED / "weights" / "vgg16_caffe_features.pth"
STYLES = SHARED / "styles"
CONTENT = SHARED / "content"

# starry_night's balance before 2026-11-26 (style.weight 0.6, relu4_3 x1), which the pipe tests' tolerances were
# set on. Measured with the shipped x1e5 recipe: the 30-step style loss falls to 0.52 of the untrained one (test
# asks < 0.5), DDP's 20-step loss falls 24% (asks 30%), bf16/fp32 gradient cosine 0.9967 (asks 0.999): its
# deepest layer dominates and its large forms need hundreds of steps. These tests check the pipes, not the recipe.
PIPE_TEST_BALANCE = ["style.weight=0.6", "style.layers.relu4_3=1"]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is optional)")
    return path


@pytest.fixture
def coco_dir() -> Path:
    return need(COCO)


@pytest.fixture
def vgg16_caffe() -> Path:
    return need(VGG16_CAFFE)


@pytest.fixture
def starry_night() -> Path:
    return need(STYLES / "starry_night.jpg")


@pytest.fixture
def chicago() -> Path:
    return need(CONTENT / "chicago.jpg")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Downloads (if any test triggers one through a mock) land in a temp cache, never ~/.cache."""
    monkeypatch.setenv("FSSTYLE_CACHE", str(tmp_path / "cache"))


class FakeResponse(io.BytesIO):
    """What urllib's urlopen returns, so torch.hub's real download code runs on local bytes."""

    def info(self):
        message = email.message.Message()
        message["Content-Length"] = str(len(self.getvalue()))
        return message
