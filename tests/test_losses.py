import torch

from fststyle.nets.losses import (
    PerceptualLoss,
    build_loss,
    channel_mean,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
)
from fststyle.nets.vgg import LossNetwork


def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, -1.0]]).view(1, 3, 1, 2)  # C=3, H=1, W=2
    g = gram_matrix(f)
    expected = torch.tensor([[5.0, 11.0, -2.0], [11.0, 25.0, -4.0], [-2.0, -4.0, 1.0]]) / (3 * 1 * 2)
    assert torch.allclose(g[0], expected)


def test_gram_is_independent_of_image_size():
    f = torch.rand(1, 4, 8, 8)
    assert torch.allclose(gram_matrix(f), gram_matrix(f.repeat(1, 1, 3, 3)), atol=1e-6)


def test_gram_gradient_is_autograds_in_either_layout_and_keeps_the_layout():
    """GramProduct's one-product backward against autograd's own bmm backward, on NCHW and NHWC features."""
    torch.manual_seed(0)
    weights = torch.randn(2, 6, 6, dtype=torch.float64)
    for layout in (torch.contiguous_format, torch.channels_last):
        f = torch.randn(2, 6, 5, 7, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
        flat = f.reshape(2, 6, 35)
        by_autograd = torch.autograd.grad((torch.bmm(flat, flat.transpose(1, 2)) / (6 * 35) * weights).sum(), f)[0]
        ours = torch.autograd.grad((gram_matrix(f).double() * weights).sum(), f)[0]
        assert torch.allclose(ours, by_autograd, rtol=1e-5, atol=1e-7)
        assert ours.is_contiguous(memory_format=layout)


def test_gram_of_bf16_features_is_fp32_and_its_gradient_bf16():
    f = torch.randn(2, 8, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    g = gram_matrix(f)
    assert g.dtype == torch.float32
    g.sum().backward()
    assert f.grad.dtype == torch.bfloat16
    expected = gram_matrix(f.detach().float())
    assert torch.allclose(g, expected, rtol=2e-2, atol=1e-3)


def test_content_and_style_loss_by_hand():
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    assert content_loss(a, b).item() == (1 + 4 + 9 + 16) / 4
    g, t = torch.ones(2, 3, 3), torch.zeros(1, 3, 3)  # one target broadcast over a batch of 2
    assert style_loss(g, t).item() == 1.0
    assert torch.equal(channel_mean(b), torch.tensor([[[2.5]]]))


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    # vertical diffs 1, 2 -> mean sq 2.5; horizontal diffs 1, 2 -> mean sq 2.5
    assert total_variation(x).item() == 5.0
    assert total_variation(torch.full((1, 3, 5, 5), 0.3)).item() == 0


def test_perceptual_loss_terms_and_weights():
    net = LossNetwork("vgg16", "random", ["relu2_2", "relu1_2"])
    style = torch.rand(1, 3, 32, 32)
    loss = PerceptualLoss(net, {"relu2_2": 1.0}, {"relu1_2": 1.0, "relu2_2": 0.5}, 2.0, 3.0, 4.0)
    loss.set_style(style)
    assert loss.style_relu1_2.shape == (1, 64, 64) and bool(loss.style_ready)
    content, output = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    terms = loss(output, content)
    f_out, f_content, f_style = net(output, ["relu1_2", "relu2_2"]), net(content, ["relu2_2"]), net(style, ["relu1_2", "relu2_2"])
    expected_style = style_loss(gram_matrix(f_out["relu1_2"]), gram_matrix(f_style["relu1_2"])) + 0.5 * style_loss(
        gram_matrix(f_out["relu2_2"]), gram_matrix(f_style["relu2_2"])
    )
    assert torch.allclose(terms["content"], 2.0 * content_loss(f_out["relu2_2"], f_content["relu2_2"]))
    assert torch.allclose(terms["style"], 3.0 * expected_style, rtol=1e-5)
    assert torch.allclose(terms["tv"], 4.0 * total_variation(output))
    assert torch.allclose(terms["total"], terms["content"] + terms["style"] + terms["tv"])
    # the style image is a perfect match for itself
    assert loss(style, style)["style"].item() < 1e-6


def test_style_targets_load_from_a_checkpoint_before_set_style():
    def make():
        return PerceptualLoss(LossNetwork("vgg16", "random", ["relu1_2"]), {"relu1_2": 1}, {"relu1_2": 1}, style_target="mean")

    a, b = make(), make()
    a.set_style(torch.rand(1, 3, 16, 16))
    b.load_state_dict(a.state_dict())
    assert bool(b.style_ready) and torch.equal(a.style_relu1_2, b.style_relu1_2)


def test_a_style_scales_its_layers_of_the_loss():
    """conf/style/udnie.yaml's ``layers`` multiplies loss.style_layers' relu4_3 weight for that style only;
    a layer the loss was told not to use stays out, and a multi-style loss keeps the shared weights."""
    from tests.test_config import compose_train

    def layers(overrides):
        cfg = compose_train(["loss.weights=random", *overrides])
        return build_loss(dict(cfg.loss), dict(cfg.style)).style_layers

    assert layers(["style=candy"])["relu4_3"] == 1.0
    assert layers(["style=udnie"])["relu4_3"] == 10000.0
    assert layers(["style=udnie", "loss.style_layers.relu4_3=2"])["relu4_3"] == 20000.0
    assert layers(["style=candy", "style.layers.relu4_3=30"])["relu4_3"] == 30.0
    assert "relu4_3" not in layers(["style=udnie", "~loss.style_layers.relu4_3"])
    multi = {"weight": 1.0, "styles": [{"weight": 4.5, "layers": {"relu4_3": 1e4}}, {"weight": 1.0}]}
    cfg = compose_train(["loss.weights=random"])
    assert build_loss(dict(cfg.loss), multi).style_layers["relu4_3"] == 1.0


def test_relative_balance_is_the_squared_relative_gram_distance_whatever_the_painting():
    """style.balance=relative: each layer's term is ||G - A||^2 / ||A||^2 (the evaluator's distance, squared), so one
    weight means the same for a painting whose Gram entries are 10x larger or smaller than another's."""
    torch.manual_seed(0)
    net = LossNetwork("vgg16", "random", layers=["relu2_2"])
    layers = {"relu1_2": 1.0, "relu2_2": 1.0}
    loss = PerceptualLoss(net, {"relu2_2": 1.0}, layers, style_weight=1.0, balance="relative")
    style, output = torch.rand(1, 3, 48, 48), torch.rand(2, 3, 48, 48)
    loss.set_style(style)
    got = loss(output, output)["style"]
    feats, targets = net(output, layers), net(style, layers)
    expected = sum(((gram_matrix(feats[n]) - gram_matrix(targets[n])).flatten(1).norm(dim=1) ** 2
                    / gram_matrix(targets[n]).norm() ** 2).mean() for n in layers)
    assert torch.allclose(got, expected, rtol=1e-4), (got, expected)
    absolute = PerceptualLoss(net, {"relu2_2": 1.0}, layers, style_weight=1.0)
    absolute.set_style(style)
    assert not torch.allclose(absolute(output, output)["style"], got)  # the default keeps Johnson's scale


def test_the_custom_recipe_is_relative():
    from tests.test_own_style import compose_train

    style = compose_train("style=custom", "style.image=/x.jpg").style
    assert style.balance == "relative"


def test_phase_crop_takes_the_same_random_window_of_output_and_photo_at_every_offset():
    from fststyle.train.module import phase_crop

    torch.manual_seed(0)
    output, content = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    assert phase_crop(output, content, 0) == (output, content)
    assert phase_crop(output, content, 1) == (output, content)
    offsets = set()
    for _ in range(400):
        judged, reference = phase_crop(output, content, 8)
        assert judged.shape == reference.shape == (2, 3, 33, 41)
        hits = [(dy, dx) for dy in range(8) for dx in range(8) if torch.equal(judged, output[..., dy:dy + 33, dx:dx + 41])]
        assert len(hits) == 1 and torch.equal(reference, content[..., hits[0][0]:hits[0][0] + 33, hits[0][1]:hits[0][1] + 41])
        offsets.add(hits[0])
    assert len(offsets) == 64  # every phase of the VGG's 8-px pooling grid against the network's 4-px one


def test_border_reflect_mirrors_output_and_photo_alike_and_judges_border_pixels_like_the_rest():
    from fststyle.train.module import border_reflect

    torch.manual_seed(0)
    output, content = torch.rand(2, 3, 40, 48, requires_grad=True), torch.rand(2, 3, 40, 48)
    assert border_reflect(output, content, 0) == (output, content)
    judged, reference = border_reflect(output, content, 6)
    assert judged.shape == reference.shape == (2, 3, 52, 60)
    assert torch.equal(judged[..., 6:-6, 6:-6], output) and torch.equal(reference[..., 6:-6, 6:-6], content)
    assert torch.equal(judged[..., 6:-6, 5], output[..., :, 1]) and torch.equal(reference[..., 0, 6:-6], content[..., 6, :])
    judged.sum().backward()  # a pixel within the margin of an edge is judged twice (itself and its mirror image)
    assert output.grad[0, 0, 20, 1].item() == 2 and output.grad[0, 0, 20, 24].item() == 1 and output.grad[0, 0, 20, 0].item() == 1


def test_lattice_energy_sees_a_pattern_locked_to_the_4px_grid_and_not_random_texture():
    from fststyle.nets.losses import lattice_energy

    torch.manual_seed(0)
    flat = torch.full((1, 3, 64, 64), 0.5)
    assert lattice_energy(flat).item() == 0
    tile = torch.rand(1, 3, 4, 4) * 0.2
    weave = flat + tile.repeat(1, 1, 16, 16)
    locked = lattice_energy(weave).item()
    assert abs(locked - (tile - tile.mean(dim=(2, 3), keepdim=True)).pow(2).mean().item()) < 1e-7
    assert abs(lattice_energy(weave[..., 1:, 3:]).item() - locked) / locked < 0.2  # any phase of the grid
    texture = flat + (torch.rand(1, 3, 64, 64) - 0.5) * 0.2 * 3 ** 0.5  # the same pixel variance, not locked
    assert lattice_energy(texture).item() < locked / 20
    weave.requires_grad_(True)
    lattice_energy(weave).backward()
    assert weave.grad.abs().sum() > 0


def test_tapered_lattice_energy_ignores_a_smooth_gradient_that_flat_means_read_as_a_grid():
    from fststyle.nets.losses import lattice_energy

    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 128).view(1, 1, 1, 128).expand(1, 3, 128, 128)  # a sky's gradient
    tile = torch.rand(1, 3, 4, 4) * 0.2
    weave = tile.repeat(1, 1, 32, 32)
    tapered = lattice_energy(weave, taper=True).item()
    assert abs(tapered - lattice_energy(weave).item()) / tapered < 0.05  # a true grid reads the same
    assert lattice_energy(ramp, taper=True).item() < lattice_energy(ramp).item() / 1000  # the gradient does not
    assert abs(lattice_energy(weave[..., 1:, 3:], taper=True).item() - tapered) / tapered < 0.2  # any phase


def test_lattice_energy_of_an_image_smaller_than_one_block_is_zero_not_nan():
    from fststyle.nets.losses import lattice_energy

    small = torch.rand(1, 3, 20, 40, requires_grad=True)
    energy = lattice_energy(small)
    assert energy.item() == 0
    energy.backward()
    assert torch.equal(small.grad, torch.zeros_like(small))


def descend(term, start: torch.Tensor, steps: int = 60) -> torch.Tensor:
    """``start`` after ``steps`` Adam steps down ``term`` (an image -> scalar loss)."""
    image = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=2e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        term(image).backward()
        optimizer.step()
    return image.detach()


def test_ripple_share_sees_regular_lines_off_the_grid_and_not_texture_or_the_photos_own_stripes():
    """the_scream's combed lines, ~3 px apart and tilted: a sharp spectral peak. Brush noise is not one, nor stripes the
    photo has (painted harder); descending the term removes the lines and leaves the texture."""
    from fststyle.measures.weave import ripple_share

    torch.manual_seed(7)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 6, 6), size=(128, 128), mode="bicubic", align_corners=False)
    photo = (smooth + 0.02 * torch.randn(2, 3, 128, 128)).clamp(0, 1)
    assert ripple_share(photo, photo).item() == 0
    texture = (photo + 0.06 * torch.randn(2, 3, 128, 128)).clamp(0, 1)
    lines = 0.06 * torch.sin(2 * torch.pi * (0.36 * yy + 0.05 * xx))
    combed = (texture + lines).clamp(0, 1)
    assert ripple_share(texture, photo).item() < 0.02
    assert ripple_share(combed, photo).item() > 0.2
    windows = 0.1 * torch.sin(2 * torch.pi * xx / 5.8)  # the photo's own stripes (a skyline's window columns)
    striped = (photo + windows).clamp(0, 1)
    painted = (striped + 0.3 * windows + 0.06 * torch.randn(2, 3, 128, 128)).clamp(0, 1)  # kept, with texture
    assert ripple_share(painted, striped).item() < 0.02
    assert ripple_share(painted, photo).item() > 0.2  # the same stripes, on a photo without them

    after = descend(lambda image: ripple_share(image, photo), combed)
    assert ripple_share(after, photo).item() < ripple_share(combed, photo).item() / 4
    lines, noise = lines.expand_as(texture), texture - photo
    assert ((after - texture) * lines).sum() / lines.pow(2).sum() < 0.3  # what is left of the lines
    assert ((after - photo) * noise).sum() / noise.pow(2).sum() > 0.8  # the texture stays


def test_spectrum_gap_sees_a_ripple_the_teacher_lacks_and_texture_the_student_lost():
    """A lite twin's weave (a sharp ripple its teacher does not paint) and its lost brush texture (a smoother copy)
    both open the gap; descending it takes the ripple out and leaves the teacher's texture."""
    from fststyle.measures.weave import spectrum_gap

    torch.manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 6, 6), size=(128, 128), mode="bicubic", align_corners=False)
    teacher = (smooth + 0.06 * torch.randn(2, 3, 128, 128)).clamp(0, 1)
    assert spectrum_gap(teacher, teacher).item() == 0
    lines = 0.06 * torch.sin(2 * torch.pi * (0.36 * yy + 0.05 * xx))
    rippled = (teacher + lines).clamp(0, 1)
    flat = torch.nn.functional.avg_pool2d(teacher, 5, stride=1, padding=2, count_include_pad=False)
    near = (teacher + 0.01 * torch.randn(2, 3, 128, 128)).clamp(0, 1)
    assert spectrum_gap(near, teacher) < 0.5 * spectrum_gap(rippled, teacher)
    assert spectrum_gap(near, teacher) < 0.5 * spectrum_gap(flat, teacher)

    after = descend(lambda image: spectrum_gap(image, teacher), rippled)
    assert spectrum_gap(after, teacher) < spectrum_gap(rippled, teacher) / 2
    lines, texture = lines.expand_as(teacher), teacher - smooth
    assert ((after - teacher) * lines).sum() / lines.pow(2).sum() < 0.3  # what is left of the ripple
    assert ((after - smooth) * texture).sum() / texture.pow(2).sum() > 0.8  # the teacher's texture stays


def test_coarse_style_asks_for_the_paintings_strokes_twice_as_large():
    """The style term at half size is smallest for an output whose texture is the painting's at twice the scale, where
    the full-size term prefers the painting's own scale."""
    def stripes(period: int, size: int) -> torch.Tensor:
        x = torch.arange(size, dtype=torch.float32)
        wave = 0.5 + 0.4 * torch.sin(2 * torch.pi * (x[None, :] + 0.5 * x[:, None]) / period)
        return torch.stack([wave, 1 - wave, wave * 0.5]).unsqueeze(0)

    torch.manual_seed(0)
    loss = PerceptualLoss(LossNetwork("vgg16", "random", ["relu1_2", "relu2_2"]), {"relu2_2": 1.0}, {"relu1_2": 1.0, "relu2_2": 1.0})
    loss.set_style(stripes(8, 64))
    same, twice = stripes(8, 128), stripes(16, 128)
    assert loss(same, same)["style"] < loss(twice, twice)["style"]
    assert loss.coarse_style(twice, 2) < loss.coarse_style(same, 2)
    assert torch.allclose(loss.coarse_style(twice, 2), loss(torch.nn.functional.avg_pool2d(twice, 2), twice[..., ::2, ::2])["style"])


def styled_module(*overrides: str):
    """A training module of the default config (random VGG) with a random style image set, seeded alike every time."""
    from omegaconf import OmegaConf

    from fststyle.train.module import StyleTransferModule
    from tests.test_config import compose_train

    c = OmegaConf.to_container(compose_train(["loss.weights=random", *overrides]), resolve=True)
    torch.manual_seed(0)
    m = StyleTransferModule(c["model"], c["loss"], c["style"], c["optim"])
    m.loss.set_style(torch.rand(1, 3, 64, 64))
    return m


def test_the_training_step_adds_the_coarse_style_term_when_weighted():
    photos = torch.rand(2, 3, 64, 64)
    plain = styled_module("loss.coarse_style_weight=0").step_losses(photos)
    coarse = styled_module("loss.coarse_style_weight=0.5").step_losses(photos)
    assert "coarse_style" not in plain
    assert coarse["coarse_style"] > 0
    assert torch.allclose(coarse["total"], plain["total"] + coarse["coarse_style"], rtol=1e-5)


def test_the_training_step_judges_the_output_mirrored_when_asked():
    photos = torch.rand(2, 3, 64, 64)
    plain, mirrored = styled_module("loss.border_reflect=0"), styled_module("loss.border_reflect=8")
    expected = mirrored.loss(*(torch.nn.functional.pad(x, (8,) * 4, mode="reflect") for x in (mirrored.transformer(photos), photos)))
    got = mirrored.step_losses(photos)
    assert torch.allclose(got["content"], expected["content"]) and torch.allclose(got["style"], expected["style"])
    assert not torch.allclose(got["content"], plain.step_losses(photos)["content"])


def test_the_training_step_adds_the_ripple_term_of_its_output_against_its_photos_when_weighted():
    from fststyle.measures.weave import ripple_share

    torch.manual_seed(1)
    photos = torch.rand(2, 3, 64, 64)
    plain = styled_module("loss.ripple_weight=0")
    rippled = styled_module("loss.ripple_weight=1e5", "loss.ripple_peak=20", "loss.ripple_margin=1")
    before = plain.step_losses(photos)
    assert "ripple" not in before
    got = rippled.step_losses(photos)
    expected = 1e5 * ripple_share(rippled.transformer(photos), photos, 20, 1)
    assert got["ripple"] > 0 and torch.allclose(got["ripple"], expected, rtol=1e-5)
    assert torch.allclose(got["total"], before["total"] + got["ripple"], rtol=1e-5)


def test_the_training_step_adds_the_spectrum_gap_to_its_teacher_only_with_a_teacher():
    from fststyle.measures.weave import spectrum_gap
    from fststyle.nets.transformer import TransformerConfig, TransformerNet

    torch.manual_seed(2)
    photos = torch.rand(2, 3, 64, 64)
    assert "spectrum" not in styled_module("loss.spectrum_weight=1e5").step_losses(photos)  # no teacher: no term
    teacher = TransformerNet(TransformerConfig(base_channels=8, residual_blocks=1)).eval()
    module = styled_module("loss.spectrum_weight=1e5", "loss.distill_weight=0")
    module.teacher, module.spectrum_weight = teacher.requires_grad_(False), 1e5
    got = module.step_losses(photos)
    with torch.no_grad():
        target = teacher(photos)
    assert got["spectrum"] > 0 and torch.allclose(got["spectrum"], 1e5 * spectrum_gap(module.transformer(photos), target), rtol=1e-5)
    assert "distill" not in got


def test_the_progress_bar_shows_every_term_the_training_step_adds():
    from fststyle.train.progress import TERMS

    terms = styled_module("loss.coarse_style_weight=0.5", "loss.ripple_weight=1e5", "loss.lattice_weight=1e8",
                          "loss.stability_weight=1e7").step_losses(torch.rand(2, 3, 64, 64))
    assert {"coarse_style", "ripple", "lattice", "stability"} <= terms.keys()
    assert terms.keys() - {"total"} <= set(TERMS)
