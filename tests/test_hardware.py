"""precision=auto: the choice logic on mocked hardware, the cached probe, and how train/infer use it."""
import json

import pytest

from fststyle import hardware
from fststyle.errors import UserError


def no_probe():
    raise AssertionError("the flags decide: no probe")


@pytest.mark.parametrize(
    "flags, speedup, expected",
    [
        ({"avx2", "avx512f", "amx_bf16", "amx_tile", "avx512_bf16"}, None, "bf16"),  # Xeon with AMX: no probe
        ({"avx2", "avx512f"}, None, "fp32"),  # no bf16 instructions at all: no probe
        ({"avx2"}, None, "fp32"),
        ({"avx512f", "avx512_bf16"}, 2.9, "bf16"),  # AMD EPYC: bf16 convolutions 2.9x fp32
        ({"avx512f", "avx512_bf16", "avx512_fp16"}, 0.6, "fp32"),  # Xeon without AMX: bf16 slower
        ({"avx512f", "avx512_bf16"}, 1.1, "fp32"),  # not worth the rounding
    ],
)
def test_cpu_precision(flags, speedup, expected):
    probe = no_probe if speedup is None else (lambda: speedup)
    assert hardware.cpu_precision(frozenset(flags), probe) == expected


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 6), "bf16"), ((7, 5), "fp16"), ((6, 1), "fp32")])
def test_cuda_precision(capability, expected):
    assert hardware.cuda_precision(capability) == expected


def test_resolve_precision_explicit_and_auto(monkeypatch, capsys):
    assert hardware.resolve_precision("fp16", "cpu") == "fp16"
    monkeypatch.setattr(hardware, "cpu_info", lambda: ("Test CPU", frozenset({"amx_bf16"})))
    monkeypatch.setattr(hardware, "_announced", set())
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    assert hardware.resolve_precision("auto", "cpu") == "bf16"
    assert hardware.resolve_precision("auto", "mps") == "fp32"
    out = capsys.readouterr().out
    assert out.count("precision=auto: bf16") == 1  # printed once
    with pytest.raises(UserError, match="precision must be one of auto, fp32, bf16, fp16"):
        hardware.resolve_precision("fp64")


def test_probe_is_cached_per_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("FSSTYLE_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(hardware, "probe_speedup", lambda: calls.append(1) or 2.5)
    assert hardware.cached_probe() == 2.5
    assert hardware.cached_probe() == 2.5
    assert len(calls) == 1
    assert list(json.loads((tmp_path / "precision-probe.json").read_text()).values()) == [2.5]


def test_probe_measures_something():
    assert hardware.probe_speedup(size=(16, 16), channels=16, repeats=1, rounds=1) >= 0


def test_machine_summary_names_the_cpu():
    line = hardware.machine_summary()
    assert line.startswith("CPU ") and "cores" in line


def test_training_precision_follows_auto(monkeypatch):
    from omegaconf import OmegaConf

    from fststyle.train.run import trainer_precision

    monkeypatch.setattr(hardware, "cpu_info", lambda: ("Test CPU", frozenset({"avx2"})))
    cfg = OmegaConf.create({"precision": "auto", "trainer": {"accelerator": "cpu", "precision": None}})
    assert trainer_precision(cfg) == "32-true"
    cfg.precision = "bf16"
    assert trainer_precision(cfg) == "bf16-mixed"
    cfg.trainer.precision = "16-mixed"  # Lightning's own key wins
    assert trainer_precision(cfg) == "16-mixed"
