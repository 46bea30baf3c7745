"""The Vision Transformer of lesson 4.4 against torch's attention and transformer layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from randomised import generator, randomise
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.train.artefacts import CACHE_ENV
from neuralarch.vision.model_zoo import MnistViTConfig, mnist_subset, mnist_vit
from neuralarch.vision.vit import (
    PatchEmbedding,
    ViT,
    ViTConfig,
    attention_rollout,
    patchify,
    sincos_position_embedding,
)

TINY = dict(image_size=12, patch_size=4, in_channels=2, num_classes=3, dim=16, depth=2, heads=2)




# --- patches and positions ------------------------------------------------------------------

@pytest.mark.parametrize("shape, patch", [((2, 1, 28, 28), 7), ((1, 3, 8, 12), 4),
                                          ((3, 2, 6, 6), 1), ((1, 1, 10, 10), 10)])
def test_patchify_equals_unfold(shape, patch):
    x = torch.randn(shape, generator=generator())
    expected = F.unfold(x, kernel_size=patch, stride=patch).transpose(1, 2)  # (N, L, C*p*p)
    torch.testing.assert_close(patchify(x, patch), expected)


def test_patchify_reads_patches_row_by_row():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    patches = patchify(x, 2)
    assert patches[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]  # top row, second patch
    assert patches[0, 2].tolist() == [8.0, 9.0, 12.0, 13.0]  # second row, first patch


@pytest.mark.parametrize("x_shape, patch, message", [
    ((1, 28, 28), 7, "must be a batch"),
    ((1, 1, 28, 28), 5, "must be > 0 and divide"),
    ((1, 1, 8, 12), 8, "must be > 0 and divide"),
    ((1, 1, 8, 8), 0, "must be > 0 and divide"),
])
def test_patchify_rejects_bad_input(x_shape, patch, message):
    with pytest.raises(ValueError, match=message):
        patchify(torch.zeros(x_shape), patch)


@pytest.mark.parametrize("channels, patch, dim, size", [(1, 7, 16, (28, 28)), (3, 4, 10, (8, 12)),
                                                         (2, 2, 5, (6, 4))])
def test_patch_embedding_is_a_linear_map_of_flattened_patches(channels, patch, dim, size):
    embed = PatchEmbedding(channels, patch, dim)
    linear = nn.Linear(channels * patch * patch, dim)
    with torch.no_grad():
        linear.weight.copy_(embed.proj.weight.reshape(dim, -1))  # (D, C, p, p) -> (D, C*p*p)
        linear.bias.copy_(embed.proj.bias)
    x = torch.randn(2, channels, *size, generator=generator())
    tokens = embed(x)
    assert tokens.shape == (2, (size[0] // patch) * (size[1] // patch), dim)
    torch.testing.assert_close(tokens, linear(patchify(x, patch)))


def numpy_sincos(grid: int, dim: int) -> np.ndarray:
    """An independent NumPy version of the 2-D sine-cosine table, written entry by entry."""
    table = np.zeros((grid * grid, dim))
    quarter = dim // 4
    for r in range(grid):
        for c in range(grid):
            for i in range(quarter):
                omega = 10000.0 ** (-i / quarter)
                table[r * grid + c, [i, quarter + i, 2 * quarter + i, 3 * quarter + i]] = (
                    np.sin(r * omega), np.cos(r * omega), np.sin(c * omega), np.cos(c * omega))
    return table


@pytest.mark.parametrize("grid, dim", [(4, 16), (3, 8), (7, 64)])
def test_sincos_position_embedding(grid, dim):
    table = sincos_position_embedding(grid, dim)
    assert table.shape == (grid * grid, dim) and table.dtype == torch.float32
    torch.testing.assert_close(table, torch.from_numpy(numpy_sincos(grid, dim)).float())
    # sin a sin b + cos a cos b = cos(a - b): similarity depends only on the offset
    sim = table.double() @ table.double().T  # (L, L)
    at = lambda r, c: r * grid + c  # noqa: E731
    torch.testing.assert_close(sim[at(0, 0), at(1, 2)], sim[at(grid - 2, grid - 3),
                                                            at(grid - 1, grid - 1)])


def test_sincos_needs_dim_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(4, 18)


# --- config and model -----------------------------------------------------------------------

def test_config_properties():
    config = ViTConfig(image_size=32, patch_size=8, dim=48, heads=3, mlp_ratio=2.5)
    assert (config.grid_size, config.num_patches, config.mlp_dim) == (4, 16, 120)


@pytest.mark.parametrize("changes, message", [
    ({"patch_size": 5}, r"image_size \(28\) must be divisible by patch_size \(5\).*\[1, 2, 4, 7"),
    ({"dim": 30, "heads": 4}, r"dim \(30\) must be divisible by heads \(4\)"),
    ({"dim": 18, "heads": 2, "pos_embedding": "sincos"}, "divisible by 4"),
    ({"pos_embedding": "rope"}, "pos_embedding"),
    ({"dropout": 1.0}, "dropout"),
    ({"depht": 3}, "did you mean 'depth'"),
])
def test_bad_configs_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        ViTConfig(**changes)


@pytest.mark.parametrize("pos", ["learned", "sincos", "none"])
def test_vit_shapes(pos):
    config = ViTConfig(**TINY, pos_embedding=pos)
    model = ViT(config)
    x = torch.randn(5, 2, 12, 12, generator=generator())
    assert model.tokens(x).shape == (5, 10, 16)  # 1 class token + 3 x 3 patches
    assert model.embed(x).shape == (5, 16)
    assert model(x).shape == (5, 3)
    maps = model.attention_maps(x)
    assert len(maps) == 2 and all(m.shape == (5, 2, 10, 10) for m in maps)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(5, 2, 10))
    learned = [name for name, _ in model.named_parameters() if name == "pos_embed"]
    assert learned == (["pos_embed"] if pos == "learned" else [])
    assert ("pos_embed" in model.state_dict()) == (pos == "learned")


def test_attention_maps_match_the_forward_pass():
    model = randomise(ViT(ViTConfig(**TINY)))
    x = torch.randn(3, 2, 12, 12, generator=generator())
    h = model.tokens(x)
    for block, weights in zip(model.blocks, model.attention_maps(x), strict=True):
        _, expected = block.self_attn(block.attn_norm(h), need_weights=True,
                                      average_weights=False)
        torch.testing.assert_close(weights, expected)
        h = block(h)
    torch.testing.assert_close(model.head(model.norm(h[:, 0])), model(x))


@pytest.mark.parametrize("shape", [(5, 2, 12, 10), (5, 1, 12, 12), (2, 12, 12)])
def test_vit_rejects_wrong_images(shape):
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 2, 12, 12\)"):
        ViT(ViTConfig(**TINY))(torch.zeros(shape))


def shuffle_patches(x: torch.Tensor, patch: int, order: torch.Tensor) -> torch.Tensor:
    """Rearrange the p x p patches of images (N, C, H, W) into a new order, row by row."""
    n, c, h, w = x.shape
    grid = x.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = grid.reshape(n, -1, c, patch, patch)[:, order]  # (N, L, C, p, p)
    tiles = tiles.reshape(n, h // patch, w // patch, c, patch, patch)
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def test_without_positions_a_vit_cannot_see_where_patches_are():
    x = torch.randn(4, 2, 12, 12, generator=generator())
    order = torch.randperm(9, generator=generator(7))
    shuffled = shuffle_patches(x, 4, order)
    torch.testing.assert_close(patchify(shuffled, 4), patchify(x, 4)[:, order])
    blind = randomise(ViT(ViTConfig(**TINY, pos_embedding="none")))
    torch.testing.assert_close(blind(shuffled), blind(x))  # a bag of patches
    for pos in ("learned", "sincos"):
        model = randomise(ViT(ViTConfig(**TINY, pos_embedding=pos)))
        assert (model(shuffled) - model(x)).abs().max() > 1e-3


def test_every_parameter_gets_a_gradient():
    model = ViT(ViTConfig(**TINY))
    F.cross_entropy(model(torch.randn(4, 2, 12, 12)), torch.tensor([0, 1, 2, 0])).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or
               not p.grad.abs().sum() > 0]
    assert missing == []


def test_initialisation_is_small_and_seeded():
    torch.manual_seed(0)
    a = ViT(ViTConfig(**TINY))
    torch.manual_seed(0)
    b = ViT(ViTConfig(**TINY))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert 0.01 < a.pos_embed.std() < 0.02 and a.pos_embed.abs().max() <= 0.04
    assert torch.equal(a.head.bias, torch.zeros(3))


# --- rollout ----------------------------------------------------------------------------------

def test_attention_rollout():
    gen = generator()
    maps = [torch.softmax(torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64), -1)
            for _ in range(3)]
    eye = torch.eye(5, dtype=torch.float64)
    one = attention_rollout(maps[:1])
    torch.testing.assert_close(one, 0.5 * maps[0].mean(1) + 0.5 * eye)
    rollout = attention_rollout(maps)
    mixed = [(0.5 * m.mean(1) + 0.5 * eye).numpy() for m in maps]
    for i in range(2):
        expected = np.linalg.multi_dot([mixed[2][i], mixed[1][i], mixed[0][i]])
        torch.testing.assert_close(rollout[i], torch.from_numpy(expected))
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5, dtype=torch.float64))


@pytest.mark.parametrize("maps", [[], [torch.ones(2, 5, 5)],
                                  [torch.ones(1, 2, 5, 5), torch.ones(1, 2, 4, 4)]])
def test_attention_rollout_rejects_bad_maps(maps):
    with pytest.raises(ValueError, match="non-empty list of equal"):
        attention_rollout(maps)


# --- the book's MNIST ViT -------------------------------------------------------------------

@pytest.mark.parametrize("arch, message", [
    (ViTConfig(num_classes=10), "num_classes=2"),
    (ViTConfig(num_classes=2, in_channels=3), "in_channels=1"),
    (ViTConfig(num_classes=2, image_size=32, patch_size=8), "image_size=28"),
])
def test_bad_mnist_vit_configs_are_refused(arch, message):
    with pytest.raises(ConfigError, match=message):
        MnistViTConfig(classes=(0, 1), arch=arch)


def test_mnist_vit_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert MnistViTConfig().arch == ViTConfig()  # the default recipe uses the default ViT
    arch = ViTConfig(num_classes=2, dim=16, depth=1, heads=2, mlp_ratio=1.0)
    config = MnistViTConfig(classes=(0, 1), arch=arch, epochs=1)
    first = mnist_vit(config)
    assert first.trained_now and isinstance(first.model, ViT)
    assert first.metrics["test_acc"] > 0.9  # chance is about 1/2: it learned from the recipe
    assert first.model.patch_embed.proj.weight.is_contiguous()  # back from channels_last
    second = mnist_vit(config)
    assert not second.trained_now and second.fingerprint == first.fingerprint
    images = mnist_subset("test", (0, 1)).normalized()[:32]
    torch.testing.assert_close(first.model(images), second.model(images))
