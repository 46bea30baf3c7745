"""Tests for neuralarch.layers.module_anatomy: TinyModule against nn.Module, and its helpers."""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.layers.module_anatomy import (
    HookHandle,
    LoadResult,
    TinyDropout,
    TinyLinear,
    TinyModule,
    TinyReLU,
    TinySequential,
    capture_activations,
    describe_module,
)

# --- one architecture, two worlds ----------------------------------------------------------------
# Each builder takes a "kit" (the torch classes or ours) so the same code builds both trees.

TORCH = {"Module": nn.Module, "Linear": nn.Linear, "ReLU": nn.ReLU, "Dropout": nn.Dropout,
         "Sequential": nn.Sequential}
TINY = {"Module": TinyModule, "Linear": TinyLinear, "ReLU": TinyReLU, "Dropout": TinyDropout,
        "Sequential": TinySequential}


def mlp(kit: dict, sizes: tuple[int, ...] = (5, 7, 3), p: float = 0.0):
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(kit["Linear"](n_in, n_out))
        if i < len(sizes) - 2:
            layers += [kit["ReLU"](), kit["Dropout"](p)]
    return kit["Sequential"](*layers)


def scaled(kit: dict):
    """A custom module with a persistent buffer, a non-persistent buffer and a bias-free child."""

    class Scaled(kit["Module"]):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("shift", torch.linspace(-1, 1, 5))  # (5,)
            self.register_buffer("gain", torch.full((5,), 2.0), persistent=False)
            self.register_buffer("calls", torch.tensor(0))  # integer: keeps its dtype in to()
            self.proj = kit["Linear"](5, 4, bias=False)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return self.proj((x - self.shift) * self.gain) * self.scale

    return Scaled()


def tied(kit: dict):
    """Encoder and decoder share one weight matrix (weight tying), as in Press & Wolf (2017)."""

    class Tied(kit["Module"]):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = kit["Linear"](5, 3)
            self.act = kit["ReLU"]()
            self.decoder = kit["Linear"](3, 5)
            self.decoder.weight = self.encoder.weight  # the same Parameter object: (3, 5)

        def forward(self, x):
            return F.linear(self.act(self.encoder(x)), self.decoder.weight.t(), self.decoder.bias)

    return Tied()


def nested(kit: dict):
    """Containers inside containers, and one module instance used at two places."""
    shared = kit["Linear"](4, 4)
    inner = kit["Sequential"](shared, kit["ReLU"](), shared)
    return kit["Sequential"](kit["Linear"](5, 4), inner, kit["Sequential"](kit["Linear"](4, 2)))


BUILDERS = {"mlp": mlp, "deep_mlp": lambda kit: mlp(kit, (5, 9, 8, 6, 2), p=0.3),
            "scaled": scaled, "tied": tied, "nested": nested}


def build_pair(builder: str, seed: int = 0):
    torch.manual_seed(seed)
    ref = BUILDERS[builder](TORCH)
    torch.manual_seed(seed)
    ours = BUILDERS[builder](TINY)
    return ours, ref


@pytest.mark.parametrize("builder", list(BUILDERS))
def test_names_and_order_match_torch(builder: str) -> None:
    ours, ref = build_pair(builder)
    for method in ("named_parameters", "named_buffers"):
        for dedup in (True, False):
            assert [n for n, _ in getattr(ours, method)(remove_duplicate=dedup)] == \
                [n for n, _ in getattr(ref, method)(remove_duplicate=dedup)], (method, dedup)
    for dedup in (True, False):
        assert [n for n, _ in ours.named_modules(remove_duplicate=dedup)] == \
            [n for n, _ in ref.named_modules(remove_duplicate=dedup)]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in ref.named_children()]
    assert [n for n, _ in ours.named_parameters(recurse=False)] == \
        [n for n, _ in ref.named_parameters(recurse=False)]
    assert [n for n, _ in ours.named_parameters(prefix="net")] == \
        [n for n, _ in ref.named_parameters(prefix="net")]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("seed", [0, 3])
def test_same_seed_same_weights_and_state_dict(builder: str, seed: int) -> None:
    ours, ref = build_pair(builder, seed)
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert list(ours_state) == list(ref_state)  # same keys, same order
    for key in ref_state:
        torch.testing.assert_close(ours_state[key], ref_state[key], rtol=0, atol=0)
        assert not ours_state[key].requires_grad


@pytest.mark.parametrize("builder", list(BUILDERS))
@pytest.mark.parametrize("batch", [1, 6])
def test_outputs_match_after_loading_torch_state(builder: str, batch: int) -> None:
    ours, _ = build_pair(builder, seed=1)
    torch.manual_seed(2)
    ref_trained = BUILDERS[builder](TORCH)  # different weights, loaded into ours
    result = ours.load_state_dict(ref_trained.state_dict())
    assert result == LoadResult([], [])
    ours.eval()
    ref_trained.eval()
    x = torch.randn(batch, 5)
    torch.testing.assert_close(ours(x), ref_trained(x))


def test_state_dict_round_trip_through_torch_save() -> None:
    ours, ref = build_pair("scaled")
    with torch.no_grad():
        ref.scale.mul_(3.0)
        ref.shift.add_(0.5)
    buffer = io.BytesIO()
    torch.save(ref.state_dict(), buffer)
    buffer.seek(0)
    ours.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(ours.scale, ref.scale)
    torch.testing.assert_close(ours.shift, ref.shift)
    assert "gain" not in ours.state_dict()  # non-persistent


def test_load_keeps_parameter_identity_and_ties() -> None:
    ours, _ = build_pair("tied")
    weight = ours.encoder.weight
    state = {k: torch.full_like(v, 0.25) for k, v in ours.state_dict().items()}
    ours.load_state_dict(state)
    assert ours.encoder.weight is weight and ours.decoder.weight is weight
    assert torch.all(weight == 0.25)
    assert "decoder.weight" in ours.state_dict()  # saved under both names, like torch


@pytest.mark.parametrize("mode", [True, False])
def test_train_eval_propagates_and_changes_dropout(mode: bool) -> None:
    ours, ref = build_pair("deep_mlp")
    assert ours.train(mode) is ours
    ref.train(mode)
    flags = [m.training for _, m in ours.named_modules()]
    assert flags == [m.training for _, m in ref.named_modules()] == [mode] * len(flags)
    x = torch.randn(64, 5)
    torch.manual_seed(5)
    ours_out = ours(x)
    torch.manual_seed(5)
    torch.testing.assert_close(ours_out, ref(x))  # same dropout masks from the same seed
    assert torch.equal(ours(x), ours_out) is (not mode)  # eval: deterministic
    ours.eval()
    assert not any(m.training for _, m in ours.named_modules())


def test_forward_hooks_order_arguments_and_replacement() -> None:
    calls: dict[str, list] = {"ours": [], "ref": []}
    x = torch.randn(2, 5)
    outputs = {}
    for world, kit in (("ours", TINY), ("ref", TORCH)):
        torch.manual_seed(0)
        net = mlp(kit)
        log = calls[world]
        for name, module in net.named_modules():
            module.register_forward_pre_hook(
                lambda m, args, n=name, log=log: log.append(("pre", n, tuple(args[0].shape))))
            module.register_forward_hook(
                lambda m, args, out, n=name, log=log: log.append(("post", n, tuple(out.shape))))
        double = net[0].register_forward_pre_hook(lambda m, args: args[0] * 2)  # bare result
        negate = net[-1].register_forward_hook(lambda m, args, out: -out)
        outputs[world] = net(x)
        double.remove()
        negate.remove()
        outputs[world + "_plain"] = net(x)
    assert calls["ours"] == calls["ref"]
    assert calls["ours"][0] == ("pre", "", (2, 5)) and calls["ours"][-1] == ("post", "", (2, 3))
    torch.testing.assert_close(outputs["ours"], outputs["ref"])
    torch.testing.assert_close(outputs["ours_plain"], outputs["ref_plain"])
    assert not torch.allclose(outputs["ours"], outputs["ours_plain"])


def test_hook_handle_removes_once_and_as_context_manager() -> None:
    layer = TinyLinear(3, 2)
    seen: list[int] = []
    with layer.register_forward_hook(lambda m, a, o: seen.append(1)) as handle:
        layer(torch.zeros(1, 3))
    layer(torch.zeros(1, 3))
    assert seen == [1] and isinstance(handle, HookHandle)
    handle.remove()  # a second remove is harmless
    once = layer.register_forward_pre_hook(lambda m, a: once.remove())  # removes itself
    layer(torch.zeros(1, 3))
    assert not layer._forward_pre_hooks


def test_plain_tensor_attribute_is_invisible() -> None:
    for kit in (TINY, TORCH):
        class Bug(kit["Module"]):
            def __init__(self) -> None:
                super().__init__()
                self.mean = torch.zeros(3)  # plain attribute: the classic bug
                self.register_buffer("fixed", torch.zeros(3))

        bug = Bug().to(dtype=torch.float64)
        assert list(bug.state_dict()) == ["fixed"]
        assert bug.mean.dtype == torch.float32 and bug.fixed.dtype == torch.float64
        rows = {r.name: r for r in describe_module(bug)}
        assert rows["mean"].kind == "plain tensor" and not rows["mean"].persistent
        assert rows["fixed"].kind == "buffer" and rows["fixed"].persistent


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_to_casts_floating_tensors_only_like_torch(dtype: torch.dtype) -> None:
    ours, ref = build_pair("scaled")
    ours.proj.weight.grad = torch.ones_like(ours.proj.weight)
    weight = ours.proj.weight
    assert ours.to(dtype=dtype) is ours
    ref.to(dtype=dtype)
    assert ours.proj.weight is weight  # the same Parameter object, new data
    assert weight.grad.dtype == dtype
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(),
                                 strict=True):
        assert a.dtype == b.dtype, name
    assert ours.calls.dtype == torch.int64 and ours.gain.dtype == dtype
    ours.to("cpu")
    assert ours.gain.device.type == "cpu"


def test_setattr_registers_and_reassigns() -> None:
    m = TinyModule()
    m.w = nn.Parameter(torch.ones(2))
    m.child = TinyReLU()
    m.register_buffer("buf", torch.zeros(2), persistent=False)
    m.buf = torch.ones(2)  # stays a (non-persistent) buffer
    assert [n for n, _ in m.named_buffers()] == ["buf"] and "buf" not in m.state_dict()
    m.w = None  # a parameter slot may be emptied
    assert list(m.named_parameters()) == [] and m.w is None
    m.child = None
    assert list(m.named_children()) == []
    m.child = nn.Parameter(torch.zeros(1))  # a name lives in one registry only
    assert "child" in m._parameters and "child" not in m._modules
    m.note = "plain"
    assert m.note == "plain" and "note" not in m.state_dict()
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = m.missing
    with pytest.raises(NotImplementedError, match="must define forward"):
        m(torch.zeros(1))


def test_load_state_dict_errors_and_non_strict() -> None:
    ours, _ = build_pair("mlp")
    state = ours.state_dict()
    partial = {k: v for k, v in state.items() if k != "3.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['3.bias'\]"):
        ours.load_state_dict(partial)
    extra = {**state, "head.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys \['head.weight'\]"):
        ours.load_state_dict(extra)
    result = ours.load_state_dict({**partial, "head.weight": torch.zeros(1)}, strict=False)
    assert result.missing_keys == ["3.bias"] and result.unexpected_keys == ["head.weight"]
    wrong = {**state, "0.weight": torch.zeros(2, 2)}
    for strict in (True, False):
        with pytest.raises(ValueError, match=r"size mismatch for 0.weight.*\(2, 2\).*\(7, 5\)"):
            ours.load_state_dict(wrong, strict=strict)
    torch.testing.assert_close(ours.state_dict()["0.weight"], state["0.weight"])


def test_registration_errors() -> None:
    m = TinyModule()
    m.plain = 1
    with pytest.raises(ValueError, match=r"name must be a non-empty str without '\.'"):
        m.register_buffer("a.b", torch.zeros(1))
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        m.register_parameter("", None)
    with pytest.raises(ValueError, match="cannot register buffer 'plain': TinyModule already has"):
        m.register_buffer("plain", torch.zeros(1))
    with pytest.raises(ValueError, match=r"parameter 'w' must be an nn\.Parameter or None, got Te"):
        m.register_parameter("w", torch.zeros(1))
    with pytest.raises(ValueError, match=r"buffer 'b' must be a torch\.Tensor or None, got list"):
        m.register_buffer("b", [1.0])
    with pytest.raises(ValueError, match="module 'c' must be a TinyModule or None, got Linear"):
        m.add_module("c", nn.Linear(1, 1))
    m.w = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match=r"parameter 'w' must be an nn\.Parameter"):
        m.w = torch.zeros(1)
    with pytest.raises(ValueError, match="mode must be a bool, got 1"):
        m.train(1)
    with pytest.raises(ValueError, match=r"dtype must be a floating-point torch\.dtype"):
        m.to(dtype=torch.int32)
    with pytest.raises(ValueError, match="in_features must be an int >= 1, got 0"):
        TinyLinear(0, 2)
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\), got 1.0"):
        TinyDropout(1.0)


def test_deepcopy_gives_independent_tree() -> None:
    ours, _ = build_pair("tied")
    clone = copy.deepcopy(ours)
    assert clone.decoder.weight is clone.encoder.weight  # the tie survives the copy
    assert clone.encoder.weight is not ours.encoder.weight


# --- describe_module and capture_activations ------------------------------------------------------

@pytest.mark.parametrize("kit", [TINY, TORCH], ids=["tiny", "torch"])
def test_describe_module_rows(kit: dict) -> None:
    torch.manual_seed(0)
    rows = describe_module(tied(kit))
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows] == ["encoder.weight", "encoder.bias", "decoder.weight",
                                      "decoder.bias"]
    assert by_name["decoder.weight"].shared_with == "encoder.weight"
    assert by_name["encoder.weight"].shared_with == ""
    assert by_name["encoder.weight"].shape == (3, 5) and by_name["encoder.weight"].numel == 15
    assert all(r.kind == "parameter" and r.requires_grad and r.persistent for r in rows)
    rows = {r.name: r for r in describe_module(scaled(kit))}
    assert rows["gain"].kind == "buffer" and not rows["gain"].persistent
    assert rows["calls"].dtype == "int64" and not rows["calls"].requires_grad


def test_describe_module_rejects_non_modules() -> None:
    with pytest.raises(ValueError, match=r"model must be an nn\.Module or TinyModule, got dict"):
        describe_module({})


@pytest.mark.parametrize("kit", [TINY, TORCH], ids=["tiny", "torch"])
def test_capture_activations_matches_manual_forward(kit: dict) -> None:
    torch.manual_seed(0)
    net = mlp(kit, (5, 9, 8, 2)).eval()
    x = torch.randn(4, 5)
    acts = capture_activations(net, x)
    assert list(acts) == ["1", "4"] and len(net) == 7
    manual = torch.relu(net[0](x))
    torch.testing.assert_close(acts["1"], manual)
    torch.testing.assert_close(acts["4"], torch.relu(net[3](net[2](manual))))
    assert not acts["1"].requires_grad
    assert not net._forward_hooks and not net[1]._forward_hooks  # hooks removed
    linear = capture_activations(net, x, module_types=(nn.Linear, TinyLinear))
    assert list(linear) == ["0", "3", "6"] and linear["6"].shape == (4, 2)


def test_capture_activations_errors_and_cleanup() -> None:
    net = mlp(TORCH)
    with pytest.raises(ValueError, match="module_types must be a non-empty tuple"):
        capture_activations(net, torch.zeros(1, 5), module_types=nn.ReLU)
    with pytest.raises(ValueError, match=r"no submodule of Sequential is an instance of \['GELU'"):
        capture_activations(net, torch.zeros(1, 5), module_types=(nn.GELU,))
    with pytest.raises(RuntimeError):
        capture_activations(net, torch.zeros(1, 4))  # wrong width: forward fails
    assert not net[1]._forward_hooks  # ...and the hook is still removed
