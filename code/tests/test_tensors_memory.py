"""Tests for neuralarch.tensors.memory (estimate == measurement) and neuralarch.device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch import device as dev
from neuralarch.tensors import memory as mem
from neuralarch.tensors.memory import (
    MemoryEstimate,
    estimate_training_memory,
    format_bytes,
    make_mlp,
    measure_training_memory,
    per_parameter_bytes,
)

LOSS_FNS = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """The torch optimizer each estimator name stands for."""
    return {
        "sgd": lambda: torch.optim.SGD(params, lr=0.1),
        "momentum": lambda: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=1e-3),
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-3),
    }[name]()


def batch(shape, out_features, loss="cross_entropy", dtype=torch.float32):
    """A random input batch and matching targets."""
    x = torch.randn(*shape, dtype=dtype)
    if loss == "cross_entropy":
        return x, torch.randint(0, out_features, shape[:-1])
    return x, torch.randn(*shape[:-1], out_features, dtype=dtype)


def measure(model, x, y, optimizer="adam", loss="cross_entropy"):
    opt = make_optimizer(optimizer, model.parameters())
    return measure_training_memory(model, x, y, LOSS_FNS[loss], opt)


def assert_same(estimate: MemoryEstimate, measured: MemoryEstimate) -> None:
    """Every component equal to the byte."""
    torch.testing.assert_close(torch.tensor(list(measured.as_dict().values())),
                               torch.tensor(list(estimate.as_dict().values())), rtol=0, atol=0)


# ---------------------------------------------------------------- estimate == measurement


@pytest.mark.parametrize("sizes", [[784, 64, 10], [20, 33, 17, 5], [8, 16, 16, 16, 16, 4]])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("optimizer", mem.OPTIMIZERS)
def test_estimate_equals_measurement_relu_mlp(sizes, batch_size, optimizer):
    torch.manual_seed(0)
    model = make_mlp(sizes)
    x, y = batch((batch_size, sizes[0]), sizes[-1])
    estimate = estimate_training_memory(model, x.shape, optimizer)
    assert_same(estimate, measure(model, x, y, optimizer))


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "silu"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("loss", mem.LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_estimate_equals_measurement_layers_losses_dtypes(activation, layer_norm, loss, dtype):
    torch.manual_seed(1)
    model = make_mlp([9, 12, 6, 4], activation, layer_norm).to(dtype)
    x, y = batch((5, 9), 4, loss, dtype)
    estimate = estimate_training_memory(model, x.shape, "adamw", loss)
    assert_same(estimate, measure(model, x, y, "adamw", loss))


def test_flatten_image_batch_and_inplace_relu():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(inplace=True), nn.Identity(),
                          nn.Linear(6, 3))
    x, y = torch.randn(4, 1, 3, 4), torch.randint(0, 3, (4,))
    estimate = estimate_training_memory(model, x.shape, "momentum")
    assert_same(estimate, measure(model, x, y, "momentum"))
    # In-place ReLU saves no activation memory: the out-of-place output was freed-and-saved too.
    out_of_place = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
    assert estimate_training_memory(out_of_place, x.shape).activations == estimate.activations


def test_inplace_relu_after_linear_and_on_counted_edge():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(5, 5), nn.ReLU(inplace=True),
                          nn.ReLU(inplace=True), nn.Linear(5, 2))
    x, y = torch.randn(3, 5), torch.randint(0, 2, (3,))
    assert_same(estimate_training_memory(model, x.shape), measure(model, x, y.clone()))


def test_nested_sequential_3d_input_mse_sigmoid_output():
    model = nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU()),
                          nn.Linear(8, 6), nn.Sigmoid())
    x, y = batch((2, 5, 6), 6, "mse")
    estimate = estimate_training_memory(model, x.shape, "sgd", "mse")
    assert_same(estimate, measure(model, x, y, "sgd", "mse"))


def test_layer_norm_over_two_dims_without_affine():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm((3, 4), elementwise_affine=False),
                          nn.Tanh(), nn.Flatten(), nn.Linear(12, 2))
    x, y = torch.randn(5, 3, 4), torch.randint(0, 2, (5,))
    assert_same(estimate_training_memory(model, x.shape), measure(model, x, y))


def test_frozen_layers_hold_no_grads_state_or_input():
    torch.manual_seed(2)
    model = make_mlp([10, 8, 8, 3], layer_norm=True)
    model[0].requires_grad_(False)  # frozen first Linear: its input x need not be saved
    model[1].requires_grad_(False)  # frozen LayerNorm on a no-grad input: saves nothing
    x, y = batch((6, 10), 3)
    estimate = estimate_training_memory(model, x.shape, "adam")
    measured = measure(model, x, y, "adam")
    assert_same(estimate, measured)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) * 4
    assert estimate.grads == trainable < estimate.params


def test_frozen_weight_with_grad_input_saves_only_the_weight():
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    model[2].weight.requires_grad_(False)
    x, y = batch((4, 5), 3)
    assert_same(estimate_training_memory(model, x.shape), measure(model, x, y))


def test_module_used_twice_counts_its_parameters_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    x, y = batch((3, 4), 4)
    estimate = estimate_training_memory(model, x.shape, "adam")
    assert estimate.params == (16 + 4) * 4
    assert_same(estimate, measure(model, x, y, "adam"))


# ---------------------------------------------------------------- component rules


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_optimizer_state_is_zero_one_or_two_times_params(dtype):
    model = make_mlp([6, 7, 3]).to(dtype)
    n_tensors = len(list(model.parameters()))
    x, y = batch((4, 6), 3, dtype=dtype)
    for name, moments in [("sgd", 0), ("momentum", 1), ("adam", 2), ("adamw", 2)]:
        estimate = estimate_training_memory(model, x.shape, name)
        measured = measure(model, x, y, name)
        steps = 4 * n_tensors if moments == 2 else 0  # Adam keeps a float32 step per tensor
        assert estimate.optimizer_state == moments * estimate.params + steps
        assert measured.optimizer_state == moments * measured.params + steps
        assert measured.params == sum(p.nbytes for p in model.parameters())
        assert measured.grads == measured.params


def test_dtype_argument_predicts_the_cast_model():
    torch.manual_seed(3)
    model = make_mlp([10, 16, 4], "gelu")
    fp32 = estimate_training_memory(model, (8, 10), "adam")
    bf16 = estimate_training_memory(model, (8, 10), "adam", dtype=torch.bfloat16)
    assert bf16.params * 2 == fp32.params and bf16.grads * 2 == fp32.grads
    assert bf16.activations < fp32.activations
    cast = model.to(torch.bfloat16)
    x, y = batch((8, 10), 4, dtype=torch.bfloat16)
    assert_same(bf16, measure(cast, x, y, "adam"))


def test_activations_grow_linearly_with_batch():
    model = make_mlp([32, 64, 64, 10])
    acts = [estimate_training_memory(model, (b, 32)).activations for b in (1, 2, 4, 8)]
    per_sample = acts[1] - acts[0]
    assert per_sample == (32 + 64 + 64 + 10) * 4 + 8  # x, two ReLU outputs, log-probs, target
    assert acts[2] - acts[1] == 2 * per_sample and acts[3] - acts[2] == 4 * per_sample
    params = [estimate_training_memory(model, (b, 32)).params for b in (1, 8)]
    assert params[0] == params[1]


def test_sliced_input_keeps_its_whole_storage_alive():
    model = make_mlp([7, 5, 3])
    data = torch.randn(100, 7)
    x, y = data[:4], torch.randint(0, 3, (4,))
    estimate = estimate_training_memory(model, x.shape)
    measured = measure(model, x, y)
    assert measured.activations - estimate.activations == (100 - 4) * 7 * 4
    assert measured.device == "cpu" and measured.peak_allocated is None


def test_total_and_as_dict():
    estimate = MemoryEstimate(params=1, grads=2, optimizer_state=3, activations=4)
    assert estimate.total == 10
    assert estimate.as_dict() == {"params": 1, "grads": 2, "optimizer_state": 3,
                                  "activations": 4, "total": 10}


@pytest.mark.parametrize(("optimizer", "precision", "expected"), [
    ("adam", "fp32", 16), ("adamw", "mixed", 16), ("adam", "bf16", 8), ("sgd", "fp32", 8),
    ("sgd", "mixed", 8), ("momentum", "mixed", 12), ("momentum", "bf16", 6)])
def test_per_parameter_bytes(optimizer, precision, expected):
    result = per_parameter_bytes(optimizer, precision)
    assert result["total"] == expected
    assert result["total"] == result["params"] + result["grads"] + result["optimizer_state"]


def test_per_parameter_bytes_matches_estimator_in_fp32():
    model = nn.Sequential(nn.Linear(30, 20, bias=False))
    estimate = estimate_training_memory(model, (2, 30), "momentum")
    per_param = per_parameter_bytes("momentum", "fp32")
    assert estimate.params + estimate.grads + estimate.optimizer_state == 600 * per_param["total"]


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (5 * 2**20, "5.00 MiB"), (3 * 2**30 // 2, "1.50 GiB"), (2**40, "1.00 TiB"),
    (2**60, "1024.00 PiB")])
def test_format_bytes(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_format_bytes_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        format_bytes(bad)


def test_make_mlp_structure():
    model = make_mlp([5, 4, 3, 2], "silu", layer_norm=True)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Linear", "LayerNorm", "SiLU", "Linear", "LayerNorm", "SiLU", "Linear"]
    assert model(torch.randn(2, 5)).shape == (2, 2)


@pytest.mark.parametrize(("sizes", "activation", "match"), [
    ([5], "relu", "at least 2 positive ints"), ([5, 0, 2], "relu", "at least 2 positive ints"),
    ([5, 2.0], "relu", "at least 2 positive ints"), ([5, 2], "swish", "activation must be")])
def test_make_mlp_rejects_bad_input(sizes, activation, match):
    with pytest.raises(ValueError, match=match):
        make_mlp(sizes, activation)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"optimizer": "lion"}, "optimizer must be one of"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"input_shape": ()}, "input_shape must be"),
    ({"input_shape": (4, 0)}, "input_shape must be"),
    ({"input_shape": (4, 5.0)}, "input_shape must be"),
    ({"input_shape": (4, 6)}, "expects 5 input features"),
    ({"dtype": torch.int32}, "floating-point"),
])
def test_estimate_rejects_bad_arguments(kwargs, match):
    args = {"model": make_mlp([5, 3]), "input_shape": (4, 5)} | kwargs
    with pytest.raises(ValueError, match=match):
        estimate_training_memory(**args)


@pytest.mark.parametrize(("model", "shape", "match"), [
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.Linear(4, 2)), (2, 4), "Dropout"),
    (nn.Conv1d(1, 2, 3), (2, 1, 8), "Conv1d"),
    (nn.Sequential(nn.Linear(4, 4), nn.SiLU(inplace=True), nn.Linear(4, 2)), (2, 4), "in-place"),
    (nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(5)), (2, 4), "normalises shape"),
    (nn.Sequential(nn.ReLU()), (2, 4), "no trainable parameters"),
    (nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2).double()), (2, 4), "mixes parameter"),
    (nn.Linear(4, 3), (2, 5, 4), "2-D logits"),
])
def test_estimate_rejects_unsupported_models(model, shape, match):
    with pytest.raises(ValueError, match=match):
        estimate_training_memory(model, shape)


def test_measure_rejects_bad_arguments():
    model = make_mlp([4, 2])
    x, y = batch((3, 4), 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="x and y must be tensors"):
        measure_training_memory(model, x.tolist(), y, F.cross_entropy, opt)
    with pytest.raises(ValueError, match=r"torch\.optim\.Optimizer"):
        measure_training_memory(model, x, y, F.cross_entropy, "sgd")
    with pytest.raises(ValueError, match="same device"):
        measure_training_memory(model, x.to("meta"), y, F.cross_entropy, opt)
    with pytest.raises(ValueError, match="scalar"):
        measure_training_memory(model, x, y, lambda o, t: F.cross_entropy(o, t, reduction="none"),
                                opt)


def test_cuda_peak_tracker_reads_the_allocator(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 100)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: 250)
    with mem._cuda_peak(torch.device("cuda")) as stats:
        assert stats == {"start": 100}
    assert stats == {"start": 100, "peak": 250}
    assert calls == ["sync", "reset", "sync"]


# ---------------------------------------------------------------- neuralarch.device


@pytest.fixture
def clean_device(monkeypatch):
    """No env override, nothing chosen yet; restore afterwards."""
    monkeypatch.delenv(dev.ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    dev.reset_device()
    yield monkeypatch
    dev.reset_device()


def test_best_device_order(clean_device):
    assert dev.best_device() == torch.device("cpu")
    clean_device.setattr(torch.backends.mps, "is_available", lambda: True)
    assert dev.best_device() == torch.device("mps")
    clean_device.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.best_device() == torch.device("cuda")


def test_get_device_is_chosen_once_until_reset(clean_device):
    assert dev.get_device() == torch.device("cpu")
    clean_device.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.get_device() == torch.device("cpu")  # cached
    dev.reset_device()
    assert dev.get_device() == torch.device("cuda")


def test_env_var_and_argument_override(clean_device):
    clean_device.setattr(torch.cuda, "is_available", lambda: True)
    clean_device.setenv(dev.ENV_VAR, "cpu")
    assert dev.get_device() == torch.device("cpu")
    assert dev.get_device(torch.device("cuda:0")) == torch.device("cuda:0")


@pytest.mark.parametrize("request_", ["cuda", "cuda:1", "mps"])
def test_unavailable_device_raises(clean_device, request_):
    with pytest.raises(RuntimeError, match="not available"):
        dev.get_device(request_)
    clean_device.setenv(dev.ENV_VAR, request_)
    with pytest.raises(RuntimeError, match=dev.ENV_VAR):
        dev.get_device()


def test_unknown_device_kind_raises(clean_device):
    with pytest.raises(ValueError, match="unknown device kind 'xpu'"):
        dev.get_device("xpu")


def test_describe_hardware(clean_device):
    info = dev.describe_hardware()
    assert info["devices"] == ["cpu"] and "gpu" not in info
    assert info["torch"] == torch.__version__
    clean_device.setattr(torch.cuda, "is_available", lambda: True)
    clean_device.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    info = dev.describe_hardware()
    assert info["devices"] == ["cpu", "cuda"] and info["gpu"] == "Fake GPU"


@pytest.mark.parametrize(("content", "expected"), [
    ("processor\t: 0\nmodel name\t: Fake CPU @ 3.00GHz\n", "Fake CPU @ 3.00GHz"),
    ("processor\t: 0\n", None),
    (None, None),
])
def test_cpu_model_reads_cpuinfo_or_falls_back(monkeypatch, tmp_path, content, expected):
    import platform

    cpuinfo = tmp_path / "cpuinfo"
    if content is not None:
        cpuinfo.write_text(content)
    monkeypatch.setattr(dev, "Path", lambda _: cpuinfo)
    fallback = platform.processor() or platform.machine()
    assert dev.cpu_model() == (expected or fallback)
