import io

import pytest
import torch

from fststyle.errors import UserError
from fststyle.nets.vgg import LossNetwork, layer_names
from tests.conftest import FakeResponse


def test_layer_names_match_torchvision_features():
    import torchvision

    for network in ("vgg16", "vgg19"):
        names = layer_names(network)
        modules = list(getattr(torchvision.models, network)().features)
        assert len(names) == len(modules)
        for name, module in zip(names, modules):
            kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
            assert isinstance(module, kind), name
    assert "relu4_3" in layer_names("vgg16") and "relu4_4" in layer_names("vgg19") and "relu4_4" not in layer_names("vgg16")


def test_truncated_after_deepest_layer_and_frozen():
    net = LossNetwork("vgg16", "random", ["relu1_2", "relu2_2"])
    assert net.names[-1] == "relu2_2" and len(net.features) == 9
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training


def test_taps_shapes_and_conv_taps_are_pre_relu():
    net = LossNetwork("vgg19", "random", ["conv4_2", "relu4_2", "relu5_1"])
    out = net(torch.rand(1, 3, 64, 64), ["conv4_2", "relu4_2", "relu5_1"])
    assert out["relu4_2"].shape == (1, 512, 8, 8) and out["relu5_1"].shape == (1, 512, 4, 4)
    assert (out["conv4_2"] < 0).any()  # not clobbered by an in-place ReLU
    assert torch.equal(out["relu4_2"], out["conv4_2"].clamp(min=0))


def test_avg_pooling_swaps_modules():
    net = LossNetwork("vgg16", "random", ["relu3_1"], pooling="avg")
    kinds = {type(m) for m in net.features}
    assert torch.nn.AvgPool2d in kinds and torch.nn.MaxPool2d not in kinds


def test_preprocessing_follows_weights(vgg16_caffe):
    x = torch.rand(1, 3, 8, 8)
    caffe = LossNetwork("vgg16", str(vgg16_caffe), ["relu1_1"])
    assert caffe.preprocessing.name == "caffe"
    expected = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    assert torch.allclose(caffe.preprocess(x), expected, atol=1e-4)

    tv = LossNetwork("vgg16", "random", ["relu1_1"])
    assert tv.preprocessing.name == "torchvision"
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(tv.preprocess(x), (x - mean) / std, atol=1e-6)


def test_local_file_loads_real_weights(vgg16_caffe):
    net = LossNetwork("vgg16", str(vgg16_caffe), ["relu1_1"])
    sd = torch.load(vgg16_caffe, weights_only=True)
    assert torch.equal(net.features[0].weight, sd["features.0.weight"])


def test_named_weights_cannot_be_paired_with_the_wrong_preprocessing():
    with pytest.raises(UserError, match="needs preprocessing 'torchvision'"):
        LossNetwork("vgg16", "torchvision", ["relu1_1"], preprocessing="caffe")


def test_torchvision_weights_download_through_torchvision(tmp_path, monkeypatch):
    """The real torchvision path, with only the transport mocked: the 'download' writes a state dict."""
    import torchvision

    state = torchvision.models.vgg16().state_dict()
    calls = []

    def fake_download(url, dst, *args, **kwargs):
        calls.append(url)
        torch.save(state, dst)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    net = LossNetwork("vgg16", "torchvision", ["relu1_1"])
    assert calls and calls[0] == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert torch.equal(net.features[0].weight, state["features.0.weight"])


def test_caffe_download_is_hash_checked(monkeypatch):
    import torchvision

    buffer = io.BytesIO()
    torch.save(torchvision.models.vgg16().state_dict(), buffer)  # right layout, wrong hash
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: FakeResponse(buffer.getvalue()))  # transport only
    with pytest.raises(UserError, match="caffe vgg16 weights.*invalid hash"):
        LossNetwork("vgg16", "caffe", ["relu1_1"])


def test_offline_download_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match="loss.weights=PATH"):
        LossNetwork("vgg19", "caffe", ["relu1_1"])


def test_bad_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        LossNetwork("vgg16", str(tmp_path / "missing.pth"), ["relu1_1"])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="weights-only state dict"):
        LossNetwork("vgg16", str(bad), ["relu1_1"])
    with pytest.raises(UserError, match="unknown vgg16 layer"):
        LossNetwork("vgg16", "random", ["relu4_4"])
    with pytest.raises(UserError, match="loss.network"):
        LossNetwork("vgg11", "random", ["relu1_1"])


def test_vgg16_file_does_not_fit_vgg19(vgg16_caffe):
    with pytest.raises(UserError, match="does not fit vgg19"):
        LossNetwork("vgg19", str(vgg16_caffe), ["relu5_1"])
