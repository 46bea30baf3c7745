"""The recurrent cells and layers of lesson 5.1 against torch's, forward and backward."""

from __future__ import annotations

import pytest
import randomised
import torch
from randomised import generator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from neuralarch.sequence.recurrent import (
    GRU,
    LSTM,
    RNN,
    copy_rnn_weights,
    gradient_through_time,
    to_torch_rnn,
)
from neuralarch.sequence.recurrent_cells import GRUCell, LSTMCell, RNNCell

TORCH_CELLS = {RNNCell: nn.RNNCell, LSTMCell: nn.LSTMCell, GRUCell: nn.GRUCell}
LAYERS = [(RNN, {"nonlinearity": "tanh"}), (RNN, {"nonlinearity": "relu"}), (LSTM, {}),
          (GRU, {})]
LAYER_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]



def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights of both signs and a non-zero mean: no test passes thanks to symmetry."""
    return randomised.randomise(module, seed, scale=0.4, shift=0.05)


def assert_same_grads(ours: nn.Module, theirs: nn.Module) -> None:
    theirs_params = dict(theirs.named_parameters())
    names = [name for name, _ in ours.named_parameters()]
    assert sorted(names) == sorted(theirs_params), "parameter names must be torch's"
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad, theirs_params[name].grad, msg=name)


def flat(out: object) -> list[torch.Tensor]:
    """All tensors of an (output, state) result, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "batch_sizes"):  # a PackedSequence
        return [out.data]
    return [t for item in out for t in flat(item)]


# --- cells ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cell_cls, kwargs", [(RNNCell, {"nonlinearity": "tanh"}),
                                              (RNNCell, {"nonlinearity": "relu"}),
                                              (LSTMCell, {}), (GRUCell, {})],
                         ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("batch, in_size, hidden", [(3, 5, 7), (1, 2, 4), (6, 9, 3)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
def test_cell_equals_torch_forward_and_backward(cell_cls, kwargs, batch, in_size, hidden, bias,
                                                with_state):
    ours = randomise(cell_cls(in_size, hidden, bias=bias, **kwargs))
    theirs = TORCH_CELLS[cell_cls](in_size, hidden, bias=bias, **kwargs)
    theirs.load_state_dict(ours.state_dict())  # same names and layout: a 1:1 copy
    gen = generator(1)
    x = torch.randn(batch, in_size, generator=gen, requires_grad=True)
    state = None
    if with_state:
        n_states = 2 if cell_cls is LSTMCell else 1
        tensors = [torch.randn(batch, hidden, generator=gen, requires_grad=True)
                   for _ in range(n_states)]
        state = tuple(tensors) if n_states == 2 else tensors[0]
    out_ours, out_theirs = ours(x, state), theirs(x, state)
    for a, b in zip(flat(out_ours), flat(out_theirs), strict=True):
        torch.testing.assert_close(a, b)
    weights = torch.randn(batch, hidden, generator=gen)  # an arbitrary loss of every output
    inputs = [x] + (flat(state) if with_state else [])
    grads_ours = torch.autograd.grad(sum((t * weights).sum() for t in flat(out_ours)),
                                     inputs + list(ours.parameters()))
    grads_theirs = torch.autograd.grad(sum((t * weights).sum() for t in flat(out_theirs)),
                                       inputs + list(theirs.parameters()))
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_lstm_cell_gate_order_is_torch_order():
    # Only the forget gate open (f = 1, i = 0): the cell state must pass through unchanged.
    cell = LSTMCell(2, 3)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.bias_ih[:3] = -50.0  # i
        cell.bias_ih[3:6] = 50.0  # f
    c = torch.tensor([[0.5, -1.0, 2.0]])
    _, c_next = cell(torch.randn(1, 2), (torch.zeros(1, 3), c))
    torch.testing.assert_close(c_next, c)


def test_gru_cell_with_update_gate_closed_keeps_state():
    cell = GRUCell(2, 3)
    with torch.no_grad():
        cell.bias_ih[3:6] = 50.0  # z = 1: h' = h
    h = torch.randn(4, 3, generator=generator())
    torch.testing.assert_close(cell(torch.randn(4, 2), h), h)


@pytest.mark.parametrize("make, message", [
    (lambda: RNNCell(3, 4, nonlinearity="sigmoid"), "nonlinearity must be one of"),
    (lambda: LSTMCell(0, 4), "input_size must be a positive int"),
    (lambda: GRUCell(3, 2.5), "hidden_size must be a positive int"),
    (lambda: RNN(3, 4, nonlinearity="gelu"), "nonlinearity must be one of"),
    (lambda: LSTM(3, 4, num_layers=0), "num_layers must be a positive int"),
    (lambda: GRU(3, 4, dropout=1.0), "dropout must be in"),
])
def test_bad_configuration_raises(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cell_rejects_a_sequence():
    with pytest.raises(ValueError, match=r"expects input \(B, 3\)"):
        LSTMCell(3, 4)(torch.randn(5, 2, 3))


# --- layers --------------------------------------------------------------------------------

@pytest.mark.parametrize("layer_cls, kwargs", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, False), (1, True),
                                                       (3, True)])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias, with_state", [(True, False), (True, True), (False, True)])
def test_layer_equals_torch_forward_and_backward(layer_cls, kwargs, num_layers, bidirectional,
                                                 batch_first, bias, with_state):
    T, B, n_in, H = 6, 3, 5, 4
    ours = randomise(layer_cls(n_in, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                               bidirectional=bidirectional, **kwargs))
    theirs = to_torch_rnn(ours)
    gen = generator(2)
    shape = (B, T, n_in) if batch_first else (T, B, n_in)
    x = torch.randn(shape, generator=gen, requires_grad=True)
    hx = None
    if with_state:
        state_shape = (num_layers * (2 if bidirectional else 1), B, H)
        states = [torch.randn(state_shape, generator=gen, requires_grad=True)
                  for _ in range(2 if layer_cls is LSTM else 1)]
        hx = tuple(states) if layer_cls is LSTM else states[0]
    out_ours, out_theirs = ours(x, hx), theirs(x, hx)
    assert out_ours[0].shape == out_theirs[0].shape
    for a, b in zip(flat(out_ours), flat(out_theirs), strict=True):
        torch.testing.assert_close(a, b)
    # a loss that weights every output and final state differently
    loss_weights = [torch.randn(t.shape, generator=gen) for t in flat(out_theirs)]
    inputs = [x] + (flat(hx) if with_state else [])
    for module, out in ((ours, out_ours), (theirs, out_theirs)):
        loss = sum((t * w).sum() for t, w in zip(flat(out), loss_weights, strict=True))
        module.zero_grad()
        for tensor in inputs:
            tensor.grad = None
        loss.backward()
        if module is ours:
            input_grads = [t.grad.clone() for t in inputs]
    for tensor, grad in zip(inputs, input_grads, strict=True):
        torch.testing.assert_close(grad, tensor.grad)
    assert_same_grads(ours, theirs)


@pytest.mark.parametrize("layer_cls, kwargs", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_packed_sequences_equal_torch(layer_cls, kwargs, bidirectional, enforce_sorted,
                                      num_layers):
    n_in, H = 3, 4
    lengths = torch.tensor([7, 5, 5, 2]) if enforce_sorted else torch.tensor([2, 7, 5, 1])
    ours = randomise(layer_cls(n_in, H, num_layers=num_layers, bidirectional=bidirectional,
                               batch_first=True, **kwargs))
    theirs = to_torch_rnn(ours)
    gen = generator(3)
    x = torch.randn(len(lengths), int(lengths.max()), n_in, generator=gen, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=enforce_sorted)
    out_ours, out_theirs = ours(packed), theirs(packed)
    assert torch.equal(out_ours[0].batch_sizes, out_theirs[0].batch_sizes)
    for name in ("sorted_indices", "unsorted_indices"):
        a, b = getattr(out_ours[0], name), getattr(out_theirs[0], name)
        assert (a is None and b is None) or torch.equal(a, b)
    for a, b in zip(flat(out_ours), flat(out_theirs), strict=True):
        torch.testing.assert_close(a, b)
    grad_out = torch.randn(out_theirs[0].data.shape, generator=gen)
    (grad_ours,) = torch.autograd.grad((out_ours[0].data * grad_out).sum(), x,
                                       retain_graph=True)  # the packing is shared
    (grad_theirs,) = torch.autograd.grad((out_theirs[0].data * grad_out).sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs)
    padded, _ = pad_packed_sequence(out_ours[0], batch_first=True)  # (B, T, D*H)
    final = out_ours[1] if layer_cls is not LSTM else out_ours[1][0]  # (L*D, B, H)
    for b, n in enumerate(lengths.tolist()):
        # each sequence alone, unpadded: the packed run must give its outputs and final state
        alone, alone_state = theirs(x[b:b + 1, :n])
        alone_h = alone_state if layer_cls is not LSTM else alone_state[0]
        torch.testing.assert_close(padded[b, :n], alone[0])
        assert torch.all(padded[b, n:] == 0), "outputs at padding are zeros, as in torch"
        # forward: state after the last real step; reverse: state after reading back to step 0,
        # having started at the last real step (h_n of torch's reverse direction)
        torch.testing.assert_close(final[:, b], alone_h[:, 0])


def test_weights_copy_both_ways_and_mismatches_are_named():
    torch_lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    ours = copy_rnn_weights(torch_lstm, LSTM(3, 5, num_layers=2, bidirectional=True))
    x = torch.randn(4, 2, 3, generator=generator())
    torch.testing.assert_close(ours(x)[0], torch_lstm(x)[0])
    assert "weight_hh_l1_reverse" in dict(ours.named_parameters())
    with pytest.raises(ValueError, match="hidden_size"):
        copy_rnn_weights(torch_lstm, LSTM(3, 6, num_layers=2, bidirectional=True))
    with pytest.raises(ValueError, match="mode"):
        copy_rnn_weights(GRU(3, 5), nn.LSTM(3, 5))
    with pytest.raises(ValueError, match="proj_size"):
        copy_rnn_weights(nn.LSTM(3, 5, proj_size=2), LSTM(3, 5))


def test_init_matches_torch_so_the_same_seed_gives_the_same_network():
    for ours_cls, theirs_cls in ((RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)):
        torch.manual_seed(5)
        ours = ours_cls(3, 4, num_layers=2, bidirectional=True)
        torch.manual_seed(5)
        theirs = theirs_cls(3, 4, num_layers=2, bidirectional=True)
        for (name, a), (name_t, b) in zip(ours.named_parameters(), theirs.named_parameters(),
                                          strict=True):
            assert name == name_t
            assert torch.equal(a, b), name


def test_dropout_between_layers_only_in_training():
    ours = randomise(GRU(3, 4, num_layers=2, dropout=0.5))
    theirs = to_torch_rnn(ours).eval()
    x = torch.randn(5, 2, 3, generator=generator())
    torch.testing.assert_close(ours.eval()(x)[0], theirs(x)[0])
    ours.train()
    torch.manual_seed(0)
    assert not torch.allclose(ours(x)[0], theirs(x)[0])


@pytest.mark.parametrize("layer, x, hx, message", [
    (LSTM(3, 4), torch.randn(5, 2, 6), None, r"expects input \(T, B, I\) with I = 3"),
    (GRU(3, 4, batch_first=True), torch.randn(2, 3), None, r"expects input \(B, T, I\)"),
    (GRU(3, 4, num_layers=2), torch.randn(5, 2, 3), torch.zeros(1, 2, 4), r"\(2, 2, 4\)"),
    (LSTM(3, 4), torch.randn(5, 2, 3), torch.zeros(1, 2, 4), "2 tensor"),
])
def test_bad_inputs_raise(layer, x, hx, message):
    with pytest.raises(ValueError, match=message):
        layer(x, hx)


# --- gradient flow through time ------------------------------------------------------------

def test_gradient_through_time_equals_for_torch_cell_and_decays():
    torch.manual_seed(0)
    ours = LSTMCell(4, 16)
    theirs = nn.LSTMCell(4, 16)
    theirs.load_state_dict(ours.state_dict())
    a = gradient_through_time(ours, steps=30, batch=8)
    torch.testing.assert_close(a, gradient_through_time(theirs, steps=30, batch=8))
    assert a.shape == (30,)
    assert all(p.grad is None for p in ours.parameters()), "the cell's .grad stays untouched"
    assert a[20] < 1e-2 * a[0], "at torch's init an LSTM forgets within tens of steps"


def test_gradient_through_time_vanishes_or_explodes_with_the_recurrent_gain():
    def rnn_with_gain(gain: float) -> RNNCell:
        torch.manual_seed(0)
        cell = RNNCell(4, 32)
        nn.init.orthogonal_(cell.weight_hh, gain)
        return cell

    small = gradient_through_time(rnn_with_gain(0.5), steps=40)
    large = gradient_through_time(rnn_with_gain(2.0), steps=40)
    assert small[30] < 1e-6 * small[0]
    assert large[30] > 10 * large[0], "a gain above 1 makes it explode"


def test_forget_bias_keeps_the_gradient_alive():
    def lstm(forget_bias: float) -> LSTMCell:
        torch.manual_seed(0)
        cell = LSTMCell(4, 32)
        with torch.no_grad():
            cell.bias_ih[32:64] += forget_bias  # the f block of torch's i, f, g, o
        return cell

    default, remembering = (gradient_through_time(lstm(b), steps=60) for b in (0.0, 3.0))
    assert remembering[50] > 1e3 * default[50]
    with pytest.raises(ValueError, match="steps must be a positive int"):
        gradient_through_time(lstm(0.0), steps=0)
