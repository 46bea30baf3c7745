"""Our BatchNorm, LayerNorm and RMSNorm against torch.nn: outputs, gradients, buffers, state."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from neuralarch.layers.normalization import (
    NORM_KINDS,
    BatchNorm1d,
    BatchNorm2d,
    LayerNorm,
    RMSNorm,
    build_normalized_mlp,
    make_norm,
)

F32, F64 = torch.float32, torch.float64
BN_CASES = [(BatchNorm1d, nn.BatchNorm1d, (8, 3), F32),
            (BatchNorm1d, nn.BatchNorm1d, (5, 4, 7), F64),
            (BatchNorm2d, nn.BatchNorm2d, (3, 6, 5, 4), F32),
            (BatchNorm2d, nn.BatchNorm2d, (2, 2, 1, 3), F64)]
BN_OPTIONS = [
    {},
    {"momentum": 0.3, "eps": 1e-3},
    {"momentum": None},
    {"affine": False},
    {"bias": False},
    {"track_running_stats": False},
    {"momentum": None, "affine": False, "track_running_stats": False},
]


def _randomise_affine(ours: nn.Module, ref: nn.Module, generator: torch.Generator) -> None:
    """Give both modules the same non-trivial affine parameters."""
    with torch.no_grad():
        for name, param in ref.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype))
            getattr(ours, name).copy_(param)


def _compare_step(ours: nn.Module, ref: nn.Module, x: torch.Tensor, **tol: float) -> None:
    """One forward and backward through both; outputs and all gradients must agree."""
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = ours(xa), ref(xb)
    torch.testing.assert_close(ya, yb, **tol)
    upstream = torch.randn(ya.shape, generator=torch.Generator().manual_seed(7), dtype=ya.dtype)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, **tol)
    for (name, pa), (_, pb) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, **tol, msg=f"gradient of {name}")
        pa.grad, pb.grad = None, None


def _compare_buffers(ours: nn.Module, ref: nn.Module) -> None:
    theirs = dict(ref.named_buffers())
    mine = dict(ours.named_buffers())
    assert mine.keys() == theirs.keys()
    for name, buf in theirs.items():
        assert mine[name].dtype == buf.dtype, name
        torch.testing.assert_close(mine[name], buf, msg=f"buffer {name}")


# ----------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize(("ours_cls", "ref_cls", "shape", "dtype"), BN_CASES)
@pytest.mark.parametrize("options", BN_OPTIONS)
def test_batchnorm_matches_torch_train_and_eval(ours_cls, ref_cls, shape, options, dtype):
    gen = torch.Generator().manual_seed(0)
    channels = shape[1]
    ours = ours_cls(channels, dtype=dtype, **options)
    ref = ref_cls(channels, dtype=dtype, **options)
    _randomise_affine(ours, ref, gen)
    for step in range(4):  # several training steps: running statistics accumulate
        x = 2.0 * torch.randn(shape, generator=gen, dtype=dtype) + step
        _compare_step(ours, ref, x)
        _compare_buffers(ours, ref)
    ours.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen, dtype=dtype)
    _compare_step(ours, ref, x)
    _compare_buffers(ours, ref)
    if ours.track_running_stats:
        assert int(ours.num_batches_tracked) == 4
        # eval uses the running statistics, so the output of one example is batch-independent
        torch.testing.assert_close(ours(x[:2])[0], ours(x)[0])
    assert repr(ours).replace(ours_cls.__name__, "") == repr(ref).replace(ref_cls.__name__, "")


def test_batchnorm_running_stats_formulas():
    gen = torch.Generator().manual_seed(1)
    bn = BatchNorm1d(3, momentum=0.25)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float32) * 3 + 2
    bn(x)
    mean, var_unbiased = x.mean(0), x.var(0, correction=1)
    torch.testing.assert_close(bn.running_mean, 0.25 * mean)
    torch.testing.assert_close(bn.running_var, 0.75 + 0.25 * var_unbiased)
    # momentum=None: the running stats are the plain average of the batch statistics
    cumulative = BatchNorm1d(3, momentum=None)
    batches = [torch.randn(6, 3, generator=gen) for _ in range(5)]
    for b in batches:
        cumulative(b)
    torch.testing.assert_close(cumulative.running_mean,
                               torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(cumulative.running_var,
                               torch.stack([b.var(0) for b in batches]).mean(0))


def test_batchnorm_training_output_is_standardised_and_eval_does_not_update():
    gen = torch.Generator().manual_seed(2)
    bn = BatchNorm2d(4)
    x = torch.randn(6, 4, 3, 3, generator=gen) * 5 - 3
    y = bn(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var((0, 2, 3), correction=0), torch.ones(4), atol=1e-3, rtol=0)
    before = copy.deepcopy(bn.state_dict())
    bn.eval()
    bn(x)
    for name, value in bn.state_dict().items():
        assert torch.equal(value, before[name]), f"eval changed {name}"


def test_batchnorm_without_running_stats_uses_batch_stats_in_eval():
    gen = torch.Generator().manual_seed(3)
    bn = BatchNorm1d(3, track_running_stats=False).eval()
    x = torch.randn(5, 3, generator=gen) + 4
    torch.testing.assert_close(bn(x).mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert bn.running_mean is None and bn.num_batches_tracked is None
    assert set(bn.state_dict()) == {"weight", "bias"}
    bn.reset_running_stats()  # a no-op without buffers
    assert bn.running_var is None


@pytest.mark.parametrize("options", [{}, {"affine": False}, {"bias": False}])
def test_batchnorm_state_dict_round_trips_with_torch(options):
    gen = torch.Generator().manual_seed(4)
    ref = nn.BatchNorm2d(3, **options)
    _randomise_affine(ref, ref, gen)
    for _ in range(3):
        ref(torch.randn(4, 3, 2, 2, generator=gen))
    ours = BatchNorm2d(3, **options)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())  # torch -> ours (strict)
    _compare_buffers(ours, ref)
    x = torch.randn(4, 3, 2, 2, generator=gen)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))
    back = nn.BatchNorm2d(3, **options)
    back.load_state_dict(ours.state_dict())  # ours -> torch (strict)
    for name, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


def test_batchnorm_reset():
    bn = BatchNorm1d(2)
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(-1.0)
    bn(torch.randn(4, 2) + 5)
    assert int(bn.num_batches_tracked) == 1 and bn.running_mean.abs().sum() > 0
    bn.reset_parameters()
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, torch.zeros(2))
    assert torch.equal(bn.running_var, torch.ones(2))
    assert torch.equal(bn.weight, torch.ones(2)) and torch.equal(bn.bias, torch.zeros(2))


def test_batchnorm_bad_inputs():
    with pytest.raises(ValueError, match="num_features must be an int >= 1, got 0"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="eps must be a number >= 0, got -1"):
        BatchNorm1d(3, eps=-1)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\] or None"):
        BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="momentum must be"):
        BatchNorm1d(3, momentum=True)
    with pytest.raises(ValueError, match=r"BatchNorm1d expects a 2D or 3D input .* got a 4D"):
        BatchNorm1d(3)(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm2d expects a 4D input"):
        BatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\) got an input with 5 channels"):
        BatchNorm1d(3)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(torch.randn(1, 3))  # torch refuses the same input
    assert BatchNorm1d(3).eval()(torch.randn(1, 3)).shape == (1, 3)  # eval is fine


# ----------------------------------------------------------------------------- LayerNorm

LN_CASES = [((4, 6), 6, F32), ((2, 3, 5), (3, 5), F64), ((3, 2, 4, 5), (2, 4, 5), F32),
            ((7,), 7, F64), ((2, 5, 3), [3], F32)]


@pytest.mark.parametrize(("shape", "normalized_shape", "dtype"), LN_CASES)
@pytest.mark.parametrize("options", [{}, {"eps": 1e-2}, {"elementwise_affine": False},
                                     {"bias": False}])
def test_layernorm_matches_torch(shape, normalized_shape, options, dtype):
    gen = torch.Generator().manual_seed(5)
    ours = LayerNorm(normalized_shape, dtype=dtype, **options)
    ref = nn.LayerNorm(normalized_shape, dtype=dtype, **options)
    _randomise_affine(ours, ref, gen)
    x = 3.0 * torch.randn(shape, generator=gen, dtype=dtype) + 1.0
    _compare_step(ours, ref, x)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert repr(ours) == repr(ref)


def test_layernorm_low_precision_and_state_dict():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, 8, generator=gen).to(torch.bfloat16)
    ours, ref = LayerNorm(8, dtype=torch.bfloat16), nn.LayerNorm(8, dtype=torch.bfloat16)
    _randomise_affine(ours, ref, gen)
    assert ours(x).dtype == torch.bfloat16
    torch.testing.assert_close(ours(x), ref(x), atol=1e-2, rtol=1e-2)
    fresh = nn.LayerNorm(8, dtype=torch.bfloat16)
    fresh.load_state_dict(ours.state_dict())
    torch.testing.assert_close(fresh(x), ref(x))
    mine = LayerNorm(8, dtype=torch.bfloat16)
    mine.load_state_dict(ref.state_dict())
    torch.testing.assert_close(mine(x), ours(x))


def test_layernorm_does_not_mix_examples():
    gen = torch.Generator().manual_seed(7)
    ln = LayerNorm(5)
    x = torch.randn(6, 5, generator=gen)
    torch.testing.assert_close(ln(x[:1]), ln(x)[:1])
    y = ln(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(6), atol=1e-6, rtol=0)


def test_layernorm_bad_inputs():
    with pytest.raises(ValueError, match="normalized_shape must be an int >= 1"):
        LayerNorm(0)
    with pytest.raises(ValueError, match="normalized_shape must be"):
        LayerNorm(())
    with pytest.raises(ValueError, match="normalized_shape must be"):
        LayerNorm((3, 2.0))
    with pytest.raises(ValueError, match="eps must be a number >= 0, got None"):
        LayerNorm(3, eps=None)
    with pytest.raises(ValueError, match=r"LayerNorm normalises over trailing dimensions \[4\]"):
        LayerNorm(4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"last 2 dimension\(s\) must equal normalized_shape"):
        LayerNorm((2, 3))(torch.randn(3))


# ----------------------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize(("shape", "normalized_shape", "dtype"), LN_CASES)
@pytest.mark.parametrize("options", [{}, {"eps": 1e-6}, {"eps": 0.5},
                                     {"elementwise_affine": False}])
def test_rmsnorm_matches_torch(shape, normalized_shape, options, dtype):
    gen = torch.Generator().manual_seed(8)
    ours = RMSNorm(normalized_shape, dtype=dtype, **options)
    ref = nn.RMSNorm(normalized_shape, dtype=dtype, **options)
    _randomise_affine(ours, ref, gen)
    x = 2.0 * torch.randn(shape, generator=gen, dtype=dtype) + 0.5
    _compare_step(ours, ref, x)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert repr(ours) == repr(ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("eps", [None, 1e-5])
def test_rmsnorm_low_precision_and_default_eps(dtype, eps):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(3, 16, generator=gen).to(dtype)
    ours, ref = RMSNorm(16, eps=eps, dtype=dtype), nn.RMSNorm(16, eps=eps, dtype=dtype)
    _randomise_affine(ours, ref, gen)
    assert ours(x).dtype == dtype
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize(("dtype", "eps"), [(torch.float32, torch.finfo(torch.float32).eps),
                                            (torch.float64, torch.finfo(torch.float64).eps)])
def test_rmsnorm_default_eps_is_machine_epsilon(dtype, eps):
    # a tiny input makes eps visible: with x^2 ~ eps the output is x / sqrt(x^2 + eps)
    x = torch.full((1, 4), eps ** 0.5, dtype=dtype)
    torch.testing.assert_close(RMSNorm(4, dtype=dtype)(x), x / (2 * eps) ** 0.5)
    torch.testing.assert_close(RMSNorm(4, dtype=dtype)(x), nn.RMSNorm(4, dtype=dtype)(x))


def test_rmsnorm_state_dict_round_trip_and_no_centring():
    gen = torch.Generator().manual_seed(10)
    ref = nn.RMSNorm((2, 3))
    _randomise_affine(ref, ref, gen)
    ours = RMSNorm((2, 3))
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 2, 3, generator=gen) + 3.0
    torch.testing.assert_close(ours(x), ref(x))
    plain = RMSNorm((2, 3), elementwise_affine=False)
    y = plain(x)
    torch.testing.assert_close(y.pow(2).mean((-2, -1)), torch.ones(4), atol=1e-5, rtol=0)
    assert y.mean() > 0.5, "RMSNorm must keep the (positive) mean of the input"
    assert list(plain.state_dict()) == []


def test_rmsnorm_bad_inputs():
    with pytest.raises(ValueError, match=r"eps must be a number >= 0 or None, got -0\.1"):
        RMSNorm(3, eps=-0.1)
    with pytest.raises(ValueError, match="eps must be"):
        RMSNorm(3, eps="small")
    with pytest.raises(ValueError, match="normalized_shape must be"):
        RMSNorm(True)
    with pytest.raises(ValueError, match=r"RMSNorm normalises over trailing dimensions \[3\]"):
        RMSNorm(3)(torch.randn(3, 4))


# ----------------------------------------------------------------------------- builders


@pytest.mark.parametrize(("kind", "cls"), [("none", nn.Identity), ("batch", BatchNorm1d),
                                           ("layer", LayerNorm), ("rms", RMSNorm)])
def test_make_norm(kind, cls):
    layer = make_norm(kind, 6)
    assert type(layer) is cls
    assert layer(torch.randn(4, 6)).shape == (4, 6)


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_build_normalized_mlp(kind):
    torch.manual_seed(0)
    model = build_normalized_mlp(kind, in_features=12, hidden=(8, 5), n_classes=3)
    x = torch.randn(4, 1, 3, 4)
    assert model(x).shape == (4, 3)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [8, 5, 3]
    assert (linears[0].bias is None) == (kind == "batch")
    assert linears[-1].bias is not None
    norms = [m for m in model if isinstance(m, BatchNorm1d | LayerNorm | RMSNorm)]
    assert len(norms) == (0 if kind == "none" else 2)


def test_builders_bad_inputs():
    with pytest.raises(ValueError, match=r"kind must be one of \['none', 'batch'"):
        make_norm("group", 4)
    with pytest.raises(ValueError, match=r"norm must be one of .* got 'bn'"):
        build_normalized_mlp("bn")
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence"):
        build_normalized_mlp("batch", hidden=())
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence"):
        build_normalized_mlp("batch", hidden=32)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be an int >= 1, got 0"):
        build_normalized_mlp("layer", hidden=(4, 0))
    with pytest.raises(ValueError, match="n_classes must be an int >= 1"):
        build_normalized_mlp("rms", n_classes=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_norms_match_torch_on_cuda():
    gen = torch.Generator().manual_seed(11)
    pairs = [(BatchNorm2d(3, device="cuda"), nn.BatchNorm2d(3, device="cuda"), (4, 3, 5, 5)),
             (LayerNorm(5, device="cuda"), nn.LayerNorm(5, device="cuda"), (4, 3, 5)),
             (RMSNorm(5, device="cuda"), nn.RMSNorm(5, device="cuda"), (4, 3, 5))]
    for ours, ref, shape in pairs:
        x = torch.randn(shape, generator=gen).cuda()
        _compare_step(ours, ref, x)
        _compare_buffers(ours, ref)
        assert all(b.device.type == "cuda" for b in ours.buffers())
