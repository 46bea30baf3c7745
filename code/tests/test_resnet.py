"""ResNet: shapes, shortcuts, zero-init identity blocks, plain nets, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.config import ConfigError
from neuralarch.vision.resnet import BasicBlock, ResNet, ResNetConfig

CONFIGS = [
    {},
    {"widths": (16, 32, 64), "blocks": (2, 2, 2), "strides": (2, 2, 2)},  # the book's MNIST CNN
    {"in_channels": 3, "num_classes": 5, "widths": (8,), "blocks": (3,), "strides": (1,)},
    {"widths": (4, 4, 6, 8), "blocks": (1, 2, 1, 2), "strides": (1, 1, 2, 3)},
    {"widths": (8, 8), "blocks": (2, 1), "strides": (3, 1), "residual": False},
]


def _blocks(model: ResNet) -> list[BasicBlock]:
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


def _side(size: int, strides: tuple[int, ...]) -> int:
    """Spatial side after the stages: each 3x3 conv with padding 1 maps s to ceil(s / stride)."""
    for stride in strides:
        size = -(-size // stride)
    return size


def _expected_parameters(c: ResNetConfig) -> int:
    """Hand formula: 3x3 convs without bias, 2 BatchNorm parameters per channel, linear head."""
    width = c.widths[0]
    total = 9 * c.in_channels * width + 2 * width  # stem conv + BN
    for out, count, stride in zip(c.widths, c.blocks, c.strides, strict=True):
        for block in range(count):
            total += 9 * width * out + 2 * out + 9 * out * out + 2 * out  # conv1, bn1, conv2, bn2
            if c.residual and ((stride != 1 and block == 0) or width != out):
                total += width * out + 2 * out  # 1x1 projection + BN
            width = out
    return total + width * c.num_classes + c.num_classes  # head


@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("size", [28, 13])
def test_output_features_and_embedding_shapes(options, size):
    config = ResNetConfig(**options)
    model = ResNet(config)
    x = torch.randn(2, config.in_channels, size, size)
    side = _side(size, config.strides)
    assert model(x).shape == (2, config.num_classes)
    assert model.features(x).shape == (2, config.widths[-1], side, side)
    assert model.embed(x).shape == (2, config.widths[-1])
    torch.testing.assert_close(model.embed(x), model.features(x).mean(dim=(2, 3)))
    model.eval()
    torch.testing.assert_close(model(x), model.head(model.embed(x)))


def test_parameter_count_of_the_book_mnist_cnn():
    config = ResNetConfig(widths=(16, 32, 64), blocks=(2, 2, 2), strides=(2, 2, 2))
    model = ResNet(config)
    assert sum(p.numel() for p in model.parameters()) == _expected_parameters(config) == 175258


@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("residual", [True, False])
def test_parameter_count_matches_hand_formula(options, residual):
    config = ResNetConfig(**{**options, "residual": residual})
    assert sum(p.numel() for p in ResNet(config).parameters()) == _expected_parameters(config)


@pytest.mark.parametrize("options", CONFIGS[:4])
def test_projection_exactly_when_stride_or_width_changes(options):
    config = ResNetConfig(**options)
    model = ResNet(config)
    width, seen = config.widths[0], 0
    for stage, (out, _, stride) in enumerate(zip(config.widths, config.blocks,
                                                     config.strides, strict=True)):
        for index, block in enumerate(model.stages[stage]):
            needs = (index == 0 and stride != 1) or width != out
            assert isinstance(block.shortcut, nn.Sequential) == needs
            assert isinstance(block.shortcut, nn.Identity) == (not needs)
            if needs:
                conv = block.shortcut[0]
                assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride) \
                    and (conv.in_channels, conv.out_channels) == (width, out)
            width, seen = out, seen + 1
    assert seen == sum(config.blocks) == len(_blocks(model))


def test_basic_block_shortcut_rules():
    assert isinstance(BasicBlock(8, 8, 1).shortcut, nn.Identity)
    assert isinstance(BasicBlock(8, 8, 2).shortcut, nn.Sequential)
    assert isinstance(BasicBlock(8, 16, 1).shortcut, nn.Sequential)
    assert isinstance(BasicBlock(8, 16, 2, residual=False).shortcut, nn.Identity)


@pytest.mark.parametrize("options", CONFIGS[:4])
@pytest.mark.parametrize("train", [True, False])
def test_zero_init_blocks_start_as_identity_plus_relu(options, train):
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(**options, zero_init_residual=True)).train(train)
    x = torch.randn(4, model.config.in_channels, 12, 12)
    inputs, outputs = [], []

    def record(module: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        inputs.append(args[0])
        outputs.append(out)

    for block in _blocks(model):
        block.register_forward_hook(record)
    model(x)
    for block, block_in, block_out in zip(_blocks(model), inputs, outputs, strict=True):
        assert torch.count_nonzero(block.bn2.weight) == 0
        torch.testing.assert_close(block_out, F.relu(block.shortcut(block_in)))
        if isinstance(block.shortcut, nn.Identity):
            # the input is a ReLU output, so relu(x) = x: the block is exactly the identity
            torch.testing.assert_close(block_out, block_in, rtol=0, atol=0)


def test_without_zero_init_blocks_are_not_identity():
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(zero_init_residual=False))
    block = model.stages[0][0]  # stride 1, 16 -> 16: an identity shortcut
    assert torch.all(block.bn2.weight == 1)
    x = F.relu(torch.randn(2, 16, 8, 8))
    assert (block(x) - x).abs().max() > 0.1


@pytest.mark.parametrize("zero_init", [True, False])
def test_plain_net_has_no_shortcut_and_no_zero_gain(zero_init):
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(widths=(4, 8), blocks=(2, 2), strides=(1, 2), residual=False,
                                zero_init_residual=zero_init))
    x = model.stem(torch.randn(3, 1, 10, 10))  # (3, 4, 10, 10)
    for block in _blocks(model):
        assert not block.residual and isinstance(block.shortcut, nn.Identity)
        assert torch.all(block.bn2.weight == 1), "a zero gain would cut a plain net in two"
        expected = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))))
        torch.testing.assert_close(block(x), expected)
        x = block(x)
    assert not any("shortcut" in name for name, _ in model.named_parameters())


def test_convolutions_use_kaiming_fan_out_init():
    torch.manual_seed(0)
    conv = ResNet(ResNetConfig(widths=(64,), blocks=(2,), strides=(1,))).stages[0][0].conv1
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.05 * (2 / fan_out) ** 0.5


def test_residual_forward_adds_the_shortcut():
    torch.manual_seed(0)
    block = BasicBlock(4, 6, stride=2).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.uniform_(0.5, 1.5)
    x = torch.randn(2, 4, 7, 7)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), F.relu(branch + block.shortcut(x)))
    assert block(x).shape == (2, 6, 4, 4)


@pytest.mark.parametrize(("options", "message"), [
    ({"widths": (8, 16), "blocks": (1,), "strides": (1, 2)}, "must be non-empty and of equal"),
    ({"widths": (), "blocks": (), "strides": ()}, "must be non-empty"),
    ({"widths": (8, 0), "blocks": (1, 1), "strides": (1, 2)}, "every width, block count"),
    ({"blocks": (1, 0, 1)}, "every width, block count and stride must be > 0"),
    ({"strides": (1, -2, 2)}, "every width, block count and stride must be > 0"),
    ({"in_channels": 0}, "in_channels"),
    ({"num_classes": 0}, "num_classes"),
    ({"residual": "yes"}, "a string is not allowed"),
    ({"width": (8,)}, "unknown field"),
])
def test_bad_configs_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        ResNetConfig(**options)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 28, 28), (2, 2, 8, 8)])
def test_wrong_input_channels_or_rank_is_rejected(shape):
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, H, W\), got"):
        ResNet()(torch.zeros(shape))


def test_default_config_is_used_when_none_is_given():
    model = ResNet()
    assert model.config == ResNetConfig()
    assert len(model.stages) == 3 and model.head.out_features == 10
