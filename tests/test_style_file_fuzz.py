"""A tampered style file is refused from its header, before anything is built or allocated."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from fststyle.errors import UserError
from fststyle.nets.transformer import TransformerConfig, TransformerNet
from fststyle.stylefile import export_transformer, load_transformer

ROOT = Path(__file__).resolve().parents[1]
VALID = {"base_channels": 8, "residual_blocks": 2, "upsample": "nearest", "styles": 1}

TAMPERED = {
    "base_channels=1000": {**VALID, "base_channels": 1000},
    "residual_blocks=100000000": {**VALID, "residual_blocks": 100_000_000},
    "base_channels=-5": {**VALID, "base_channels": -5},
    "base_channels=abc": {**VALID, "base_channels": "abc"},
    "base_channels=8.5": {**VALID, "base_channels": 8.5},
    "base_channels=true": {**VALID, "base_channels": True},
    "residual_blocks=3": {**VALID, "residual_blocks": 3},
    "styles=0": {**VALID, "styles": 0},
    "styles=1e9": {**VALID, "styles": 10**9},
    "upsample=bogus": {**VALID, "upsample": "bogus"},
    "end_kernel=4": {**VALID, "end_kernel": 4},
    "end_kernel=99": {**VALID, "end_kernel": 99},
    "end_kernel=-1": {**VALID, "end_kernel": -1},
    "block=0": {**VALID, "block": 0},
    "block=64": {**VALID, "block": 64},
    "skips=1": {**VALID, "skips": 1},
    "extra field": {**VALID, "exploit": 1},
    "a list": [1, 2, 3],
    "null": None,
}


def tampered_copy(tmp_path: Path, architecture_text: str) -> Path:
    path = export_transformer(TransformerNet(TransformerConfig(**VALID)), tmp_path / "valid.safetensors", {"name": "a"})
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["architecture"] = architecture_text
    out = tmp_path / "tampered.safetensors"
    save_file(tensors, str(out), metadata=meta)
    return out


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_every_tampered_architecture_is_one_clear_refusal(tmp_path, case):
    path = tampered_copy(tmp_path, json.dumps(TAMPERED[case]))
    with pytest.raises(UserError, match=str(path)):
        load_transformer(path)


@pytest.mark.parametrize("text", ["{not json", "", "[[["])
def test_architecture_that_is_not_json(tmp_path, text):
    with pytest.raises(UserError, match="architecture"):
        load_transformer(tampered_copy(tmp_path, text))


def test_a_shape_changed_under_a_valid_architecture(tmp_path):
    path = export_transformer(TransformerNet(TransformerConfig(**VALID)), tmp_path / "a.safetensors", {"name": "a"})
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    key = next(iter(tensors))
    tensors[key] = tensors[key][:1].clone()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(UserError, match="do not fit"):
        load_transformer(path)


PEAK = """
import resource, sys
from fststyle.errors import UserError
from fststyle.stylefile import load_transformer
try:
    load_transformer(sys.argv[1])
except UserError:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_kib(path: Path) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_peak_memory_of_a_tampered_file_stays_near_a_valid_one(tmp_path):
    """base_channels=1000 used to peak at 6.7 GB before its error; residual_blocks=1e8 grew past 23 GB."""
    valid = peak_kib(tampered_copy(tmp_path / "v", json.dumps(VALID)))
    for case in ("base_channels=1000", "residual_blocks=100000000"):
        tampered = peak_kib(tampered_copy(tmp_path / case, json.dumps(TAMPERED[case])))
        assert tampered < valid * 1.2 + 20_000, (case, tampered, valid)
