"""Gram matrices, content/style/TV losses, the feature extractor and the style optimiser."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.vision.style_transfer import (
    FeatureExtractor,
    StyleLoss,
    StyleTransferConfig,
    content_loss,
    gram_matrix,
    style_loss,
    total_variation,
    transfer_style,
)

LAYERS = ("relu1_1", "relu2_1")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_net(seed: int = 0) -> nn.Sequential:
    """A two-stage VGG-like net with the layer names the default config asks for."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1_1=nn.Conv2d(3, 4, 3, padding=1), relu1_1=nn.ReLU(), pool1=nn.AvgPool2d(2),
        conv2_1=nn.Conv2d(4, 6, 3, padding=1), relu2_1=nn.ReLU()))


def _config(**changes: object) -> StyleTransferConfig:
    return StyleTransferConfig(content_layers=("relu2_1",), style_layers=LAYERS, **changes)


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("layers after the deepest requested one must not run")


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 7, 6, 3), (3, 1, 2, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_matrix_matches_einsum_and_loop(shape, dtype):
    x = torch.randn(shape, generator=_gen(), dtype=dtype)
    n, c, h, w = shape
    reference = torch.einsum("nchw,ndhw->ncd", x, x) / (h * w)
    torch.testing.assert_close(gram_matrix(x), reference)
    loop = torch.zeros(n, c, c, dtype=dtype)
    for b in range(n):
        for i in range(c):
            for j in range(c):
                loop[b, i, j] = (x[b, i] * x[b, j]).sum()
    torch.testing.assert_close(gram_matrix(x, normalize=False), loop)
    torch.testing.assert_close(gram_matrix(x), gram_matrix(x).transpose(1, 2))  # symmetric


def test_gram_matrix_ignores_the_order_of_positions():
    x = torch.randn(2, 5, 6, 7, generator=_gen())
    positions = torch.randperm(42, generator=_gen(1))
    shuffled = x.flatten(2)[:, :, positions].view_as(x)
    assert not torch.equal(shuffled, x)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(x))


@pytest.mark.parametrize("bad", [torch.zeros(3, 4, 5), torch.zeros(1, 2, 3, 3, dtype=torch.long),
                                 [[1.0]]])
def test_gram_matrix_rejects_non_image_batches(bad):
    with pytest.raises(ValueError, match=r"features must be a float tensor of shape \(N, C, H, W"):
        gram_matrix(bad)


def test_content_loss_is_the_mean_squared_difference():
    a, b = torch.randn(2, 3, 4, 5, generator=_gen()), torch.randn(2, 3, 4, 5, generator=_gen(1))
    torch.testing.assert_close(content_loss(a, b), ((a - b) ** 2).sum() / a.numel())
    assert content_loss(a, a).item() == 0.0
    with pytest.raises(ValueError, match="must have the same shape"):
        content_loss(a, b[:, :, :3])


def test_style_loss_against_explicit_formula_and_default_weights():
    feats = {name: torch.randn(1, c, 5, 4, generator=_gen(i))
             for i, (name, c) in enumerate((("a", 3), ("b", 6)))}
    others = {name: torch.randn(f.shape, generator=_gen(9 + i))
              for i, (name, f) in enumerate(feats.items())}
    targets = {name: gram_matrix(f) for name, f in others.items()}
    weights = {"a": 0.3, "b": 2.0}
    expected = sum(weights[n] * ((gram_matrix(feats[n]) - targets[n]) ** 2).sum()
                   / feats[n].shape[1] ** 2 for n in feats)
    torch.testing.assert_close(style_loss(feats, targets, weights), expected)
    equal = sum(0.5 * ((gram_matrix(feats[n]) - targets[n]) ** 2).mean() for n in feats)
    torch.testing.assert_close(style_loss(feats, targets), equal)


def test_style_loss_is_zero_for_the_same_image_and_blind_to_layout():
    net = _tiny_net()
    extractor = FeatureExtractor(net, LAYERS)
    image = torch.rand(1, 3, 8, 8, generator=_gen())
    with torch.no_grad():
        feats = extractor(image)
        targets = {name: gram_matrix(f) for name, f in feats.items()}
        assert style_loss(feats, targets).item() == 0.0
        # Permute the positions of every layer's feature maps: the style loss stays zero.
        permuted = {}
        for i, (name, f) in enumerate(feats.items()):
            order = torch.randperm(f.shape[2] * f.shape[3], generator=_gen(i))
            permuted[name] = f.flatten(2)[:, :, order].view_as(f)
            assert not torch.equal(permuted[name], f)
        # ...while another image's style loss is not zero.
        other = extractor(torch.rand(1, 3, 8, 8, generator=_gen(5)) ** 4)
        assert style_loss(other, targets).item() > 0.0
        assert style_loss(permuted, targets).item() < 1e-6 * style_loss(other, targets).item()


def test_style_loss_errors():
    f = {"a": torch.randn(1, 2, 3, 3, generator=_gen())}
    g = {"a": gram_matrix(f["a"])}
    with pytest.raises(ValueError, match="target_grams is empty"):
        style_loss(f, {})
    with pytest.raises(ValueError, match=r"features lack the style layers \['b'\]"):
        style_loss(f, {"b": g["a"]})
    with pytest.raises(ValueError, match="weights must name exactly the style layers"):
        style_loss(f, g, {"a": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="layer 'a': Gram matrix"):
        style_loss(f, {"a": torch.zeros(1, 3, 3)})


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("shape", [(1, 3, 4, 6), (2, 1, 5, 2)])
def test_total_variation_against_loops(power, shape):
    x = torch.rand(shape, generator=_gen(), dtype=torch.float64)
    n, c, h, w = shape
    down = sum(abs(x[b, k, i + 1, j] - x[b, k, i, j]) ** power for b in range(n) for k in range(c)
               for i in range(h - 1) for j in range(w)) / (n * c * (h - 1) * w)
    right = sum(abs(x[b, k, i, j + 1] - x[b, k, i, j]) ** power for b in range(n)
                for k in range(c) for i in range(h) for j in range(w - 1)) / (n * c * h * (w - 1))
    torch.testing.assert_close(total_variation(x, power), down + right)
    assert total_variation(torch.ones(shape), power).item() == 0.0


def test_total_variation_errors():
    with pytest.raises(ValueError, match="power must be > 0, got 0"):
        total_variation(torch.rand(1, 1, 3, 3), power=0)
    with pytest.raises(ValueError, match="x must be a float tensor"):
        total_variation(torch.rand(3, 3))


def test_feature_extractor_returns_named_outputs_and_stops_early():
    net = _tiny_net()
    net.add_module("boom", _Boom())
    x = torch.rand(2, 3, 8, 6, generator=_gen())
    extractor = FeatureExtractor(net, ("relu2_1", "relu1_1", "relu2_1"))
    assert extractor.layers == ("relu2_1", "relu1_1")
    out = extractor(x)
    assert set(out) == {"relu1_1", "relu2_1"}
    relu1 = F.relu(net.conv1_1(x))
    torch.testing.assert_close(out["relu1_1"], relu1)
    torch.testing.assert_close(out["relu2_1"], F.relu(net.conv2_1(F.avg_pool2d(relu1, 2))))
    assert out["relu2_1"].shape == (2, 6, 4, 3)


def test_feature_extractor_errors():
    with pytest.raises(ValueError, match=r"unknown: \['relu9_9'\]; available: \['conv1_1'"):
        FeatureExtractor(_tiny_net(), ("relu1_1", "relu9_9"))
    with pytest.raises(ValueError, match="non-empty list of layer names"):
        FeatureExtractor(_tiny_net(), ())
    with pytest.raises(ValueError, match="x must be a float tensor"):
        FeatureExtractor(_tiny_net(), LAYERS)(torch.zeros(3, 8, 8))


def test_config_validation_and_properties():
    config = StyleTransferConfig()
    assert config.layers == ("relu2_1", "relu1_1", "relu3_1", "relu4_1")
    assert config.layer_weights == dict.fromkeys(config.style_layers, 0.25)
    weighted = _config(style_layer_weights=(2.0, 0.5))
    assert weighted.layer_weights == {"relu1_1": 2.0, "relu2_1": 0.5}
    with pytest.raises(ConfigError, match="one weight >= 0 per style layer"):
        _config(style_layer_weights=(1.0,))
    with pytest.raises(ConfigError, match="one weight >= 0 per style layer"):
        _config(style_layer_weights=(1.0, -1.0))
    with pytest.raises(ConfigError, match="must each name at least one layer"):
        StyleTransferConfig(style_layers=())
    with pytest.raises(ConfigError, match="steps = 0"):
        StyleTransferConfig(steps=0)
    with pytest.raises(ConfigError, match="optimizer = 'sgd'"):
        StyleTransferConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="did you mean 'style_weight'"):
        StyleTransferConfig(style_wieght=1.0)


def test_style_loss_module_relative_terms():
    net = _tiny_net()
    config = _config(style_weight=2.0, tv_weight=0.5, style_layer_weights=(0.3, 0.7))
    extractor = FeatureExtractor(net, config.layers)
    content = torch.rand(1, 3, 8, 8, generator=_gen(1))
    style = torch.rand(1, 3, 8, 8, generator=_gen(2))
    image = torch.rand(1, 3, 8, 8, generator=_gen(3))
    losses = StyleLoss(extractor, config, style, content)(image)
    with torch.no_grad():
        f_img, f_sty, f_con = extractor(image), extractor(style), extractor(content)
    rel_style = sum(w * ((gram_matrix(f_img[n]) - gram_matrix(f_sty[n])) ** 2).sum()
                    / (gram_matrix(f_sty[n]) ** 2).sum()
                    for n, w in zip(LAYERS, (0.3, 0.7), strict=True))
    rel_content = ((f_img["relu2_1"] - f_con["relu2_1"]) ** 2).sum() / (f_con["relu2_1"] ** 2).sum()
    torch.testing.assert_close(losses["style"], rel_style)
    torch.testing.assert_close(losses["content"], rel_content)
    torch.testing.assert_close(losses["tv"], total_variation(image))
    torch.testing.assert_close(losses["total"],
                               rel_content + 2.0 * rel_style + 0.5 * total_variation(image))
    absolute = StyleLoss(extractor, config.replace(relative=False), style, content)(image)
    torch.testing.assert_close(absolute["content"], content_loss(f_img["relu2_1"],
                                                                 f_con["relu2_1"]))
    same = StyleLoss(extractor, config, style, style)(style)
    assert same["style"].item() == 0.0 and same["content"].item() == 0.0


def test_style_loss_module_errors():
    config = _config()
    with pytest.raises(ValueError, match=r"does not return the layers \['relu2_1'\]"):
        StyleLoss(FeatureExtractor(_tiny_net(), ("relu1_1",)), config, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="style must be a float tensor"):
        StyleLoss(FeatureExtractor(_tiny_net(), LAYERS), config, torch.rand(3, 8, 8))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
@pytest.mark.parametrize("parametrization", ["sigmoid", "clamp"])
def test_transfer_style_decreases_the_loss(optimizer, parametrization):
    extractor = FeatureExtractor(_tiny_net(), LAYERS)
    content = torch.rand(1, 3, 12, 10, generator=_gen(1))
    style = torch.rand(1, 3, 16, 16, generator=_gen(2)) ** 3  # darker statistics
    config = _config(steps=30, optimizer=optimizer, parametrization=parametrization,
                     tv_weight=0.1)
    result = transfer_style(content, style, extractor, config)
    history = result.history
    assert set(history) == {"total", "content", "style", "tv"}
    assert len(history["total"]) <= config.steps + 1
    assert history["total"][-1] < 0.5 * history["total"][0]
    assert history["style"][-1] < history["style"][0]
    assert result.final == {name: values[-1] for name, values in history.items()}
    assert result.image.shape == content.shape and not result.image.requires_grad
    assert result.image.min().item() >= 0.0 and result.image.max().item() <= 1.0


def test_texture_synthesis_from_noise_is_deterministic():
    extractor = FeatureExtractor(_tiny_net(), LAYERS)
    style = torch.rand(1, 3, 16, 16, generator=_gen(2)) ** 3
    config = _config(init="noise", content_weight=0.0, steps=25, seed=3)
    first = transfer_style(None, style, extractor, config, size=(12, 14))
    second = transfer_style(None, style, extractor, config, size=(12, 14))
    assert first.image.shape == (1, 3, 12, 14)
    assert torch.equal(first.image, second.image)
    assert first.history == second.history
    assert all(value == 0.0 for value in first.history["content"])
    assert first.final["style"] < 0.2 * first.history["style"][0]
    other_seed = transfer_style(None, style, extractor, config.replace(seed=4), size=(12, 14))
    assert not torch.equal(other_seed.image, first.image)
    default_size = transfer_style(None, style, extractor, config.replace(steps=2))
    assert default_size.image.shape == style.shape


def test_transfer_style_stops_when_there_is_nothing_to_improve():
    extractor = FeatureExtractor(_tiny_net(), LAYERS)
    image = torch.rand(1, 3, 8, 8, generator=_gen(1))
    result = transfer_style(image, image, extractor, _config(steps=20, parametrization="clamp"))
    assert len(result.history["total"]) == 2  # one evaluation, zero gradient, then the final
    assert result.final["total"] == 0.0


def test_transfer_style_errors():
    extractor = FeatureExtractor(_tiny_net(), LAYERS)
    style = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="init='content' needs a content image"):
        transfer_style(None, style, extractor, _config())
    with pytest.raises(ValueError, match="must be one image with the style image's 3 channels"):
        transfer_style(torch.rand(2, 3, 8, 8), style, extractor, _config())
    with pytest.raises(ValueError, match="must be one image with the style image's 3 channels"):
        transfer_style(torch.rand(1, 1, 8, 8), style, extractor, _config())
    with pytest.raises(ValueError, match=r"size=\(4, 4\) is only for texture synthesis"):
        transfer_style(torch.rand(1, 3, 8, 8), style, extractor, _config(), size=(4, 4))
    with pytest.raises(ValueError, match="content must be a float tensor"):
        transfer_style(torch.rand(3, 8, 8), style, extractor, _config())
    with pytest.raises(ValueError, match="style must be a float tensor"):
        transfer_style(None, torch.rand(3, 8, 8), extractor, _config(init="noise"))
