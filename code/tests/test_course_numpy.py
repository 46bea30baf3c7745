"""Week 01's NumPy backprop and optimizers, checked against torch autograd and torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from neuralarch.course import numpy_mlp
from neuralarch.course.numpy_mlp import (
    MLP,
    Dense,
    ReLU,
    SoftmaxCrossEntropy,
    accuracy,
    blas_threads,
    fit,
    gradient_check,
    log_softmax,
    numerical_gradient,
    relative_error,
)
from neuralarch.course.numpy_optimizers import (
    SGD,
    Adam,
    Optimizer,
    RMSProp,
    logistic_loss_and_grad,
    sigmoid,
    train_logistic_regression,
)


def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    """A torch copy of a NumPy array (optionally a leaf that records gradients)."""
    return torch.tensor(a, requires_grad=grad)


# ---------------------------------------------------------------- layers vs torch autograd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("batch", "n_in", "n_out"), [(1, 3, 2), (5, 7, 4), (16, 4, 9)])
def test_dense_forward_and_backward_match_autograd(dtype, batch, n_in, n_out):
    rng = np.random.default_rng(0)
    layer = Dense(n_in, n_out, rng, dtype=dtype)
    layer.b[:] = rng.standard_normal(n_out)  # non-zero bias, so db is really tested
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    grad_out = rng.standard_normal((batch, n_out)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(grad_out)

    x_t, w_t, b_t = t(x, True), t(layer.W, True), t(layer.b, True)
    y_t = F.linear(x_t, w_t.T, b_t)  # torch stores weights (out, in); ours are (in, out)
    y_t.backward(t(grad_out))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {}
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(t(y), y_t.detach(), **tol)
    assert_close(t(dx), x_t.grad, **tol)
    assert_close(t(layer.dW), w_t.grad, **tol)
    assert_close(t(layer.db), b_t.grad, **tol)


def test_dense_init_is_he_scaled():
    layer = Dense(400, 300, np.random.default_rng(0))
    assert layer.W.shape == (400, 300) and layer.W.dtype == np.float32
    assert abs(layer.W.std() - np.sqrt(2 / 400)) < 0.002
    assert not layer.b.any()
    assert [name for name, _, _ in layer.parameters()] == ["W", "b"]


@pytest.mark.parametrize("shape", [(4, 6), (1, 3), (9, 2)])
def test_relu_matches_autograd(shape):
    rng = np.random.default_rng(1)
    x, grad_out = rng.standard_normal(shape), rng.standard_normal(shape)
    relu = ReLU()
    y, dx = relu.forward(x), relu.backward(grad_out)
    x_t = t(x, True)
    y_t = torch.relu(x_t)
    y_t.backward(t(grad_out))
    assert_close(t(y), y_t.detach())
    assert_close(t(dx), x_t.grad)
    assert relu.parameters() == []


@pytest.mark.parametrize(("batch", "classes", "scale"), [(4, 10, 1.0), (7, 3, 5.0), (1, 2, 0.1)])
def test_softmax_cross_entropy_matches_torch(batch, classes, scale):
    rng = np.random.default_rng(2)
    logits = scale * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, batch)
    head = SoftmaxCrossEntropy()
    loss = head.forward(logits, labels)
    grad = head.backward()
    logits_t = t(logits, True)
    loss_t = F.cross_entropy(logits_t, torch.from_numpy(labels))
    loss_t.backward()
    assert isinstance(loss, float)
    assert_close(torch.tensor(loss, dtype=torch.float64), loss_t.detach())
    assert_close(t(grad), logits_t.grad)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1000.0, 1000.0, 999.0]])
    labels = np.array([0, 2])
    head = SoftmaxCrossEntropy()
    loss = head.forward(logits, labels)
    expected = F.cross_entropy(t(logits), torch.from_numpy(labels)).item()
    assert np.isfinite(loss) and loss == pytest.approx(expected)
    assert np.isfinite(head.backward()).all()


def test_log_softmax_matches_torch():
    logits = np.random.default_rng(3).standard_normal((3, 4, 5)) * 30
    assert_close(t(log_softmax(logits)), torch.log_softmax(t(logits), dim=-1))


# ---------------------------------------------------------------- the N-layer MLP


def torch_copy(model: MLP) -> torch.nn.Sequential:
    """A torch.nn.Sequential with the same weights as ``model`` (float64)."""
    modules: list[torch.nn.Module] = []
    for layer in model.layers:
        if isinstance(layer, Dense):
            linear = torch.nn.Linear(*layer.W.shape, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(t(layer.W.T))
                linear.bias.copy_(t(layer.b))
            modules.append(linear)
        else:
            modules.append(torch.nn.ReLU())
    return torch.nn.Sequential(*modules)


@pytest.mark.parametrize("sizes", [[5, 3], [6, 8, 4], [7, 9, 8, 3], [4, 5, 5, 5, 5, 2]])
def test_mlp_forward_and_backward_match_torch(sizes):
    rng = np.random.default_rng(4)
    model = MLP(sizes, seed=1, dtype=np.float64)
    for _, value, _ in model.named_parameters():
        value[...] += 0.1 * rng.standard_normal(value.shape)  # non-zero biases
    x = rng.standard_normal((6, sizes[0]))
    labels = rng.integers(0, sizes[-1], 6)
    loss = model.loss(x, labels)
    model.backward()

    net = torch_copy(model)
    loss_t = F.cross_entropy(net(t(x)), torch.from_numpy(labels))
    loss_t.backward()
    assert len(model.layers) == 2 * (len(sizes) - 1) - 1  # Dense, ReLU, ..., Dense
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    grads = model.gradients()
    for i, linear in enumerate(linears):
        assert_close(t(grads[2 * i]), linear.weight.grad.T)
        assert_close(t(grads[2 * i + 1]), linear.bias.grad)
    names = [name for name, _, _ in model.named_parameters()]
    assert names[:2] == ["layers.0.W", "layers.0.b"]


def test_mlp_predict_and_accuracy():
    model = MLP([3, 4, 2], seed=0, dtype=np.float64)
    x = np.random.default_rng(5).standard_normal((25, 3))
    predicted = model.predict(x, batch_size=7)  # batches of 7, 7, 7, 4
    assert predicted.shape == (25,)
    assert_close(t(predicted), t(model.forward(x).argmax(axis=1)))
    assert accuracy(model, x, predicted) == 1.0
    assert accuracy(model, x, 1 - predicted) == 0.0


# ---------------------------------------------------------------- numerical gradients


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_numerical_gradient_of_a_known_function(eps):
    x = np.random.default_rng(6).standard_normal((3, 4))
    before = x.copy()
    grad = numerical_gradient(lambda: float((x**3).sum()), x, eps=eps)
    assert_close(t(grad), t(3 * x**2), rtol=1e-5, atol=1e-5)
    assert np.array_equal(x, before), "x must be restored exactly"


@pytest.mark.parametrize("sizes", [[6, 5, 3], [4, 7, 6, 5, 3]])
def test_gradient_check_passes_in_float64(sizes):
    rng = np.random.default_rng(7)
    model = MLP(sizes, seed=2, dtype=np.float64)
    x, labels = rng.standard_normal((5, sizes[0])), rng.integers(0, sizes[-1], 5)
    check = gradient_check(model, x, labels)
    n_params = sum(p.size for p in model.parameters())
    assert check.checked_entries == n_params
    assert set(check.errors) == {name for name, _, _ in model.named_parameters()}
    assert check.max_error < 1e-6


def test_gradient_check_subset_and_float32_is_worse():
    rng = np.random.default_rng(8)
    x, labels = rng.standard_normal((5, 20)), rng.integers(0, 4, 5)
    exact = gradient_check(MLP([20, 30, 4], seed=0, dtype=np.float64), x, labels, max_entries=10)
    rough = gradient_check(MLP([20, 30, 4], seed=0, dtype=np.float32), x.astype(np.float32),
                           labels, max_entries=10)
    assert exact.checked_entries == 10 + 10 + 10 + 4  # b of the last layer has only 4 entries
    assert rough.max_error > 100 * exact.max_error


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    def forgot_the_mean(self):  # the classic bug: sum over the batch instead of the mean
        grad = self._probs.copy()
        grad[np.arange(len(self._labels)), self._labels] -= 1.0
        return grad

    monkeypatch.setattr(SoftmaxCrossEntropy, "backward", forgot_the_mean)
    rng = np.random.default_rng(9)
    model = MLP([4, 6, 3], seed=0, dtype=np.float64)
    check = gradient_check(model, rng.standard_normal((8, 4)), rng.integers(0, 3, 8))
    assert check.max_error > 0.5


def test_relative_error():
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert relative_error(np.array([3.0, 0.0]), np.array([0.0, 4.0])) == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="same shape"):
        relative_error(np.zeros(2), np.zeros(3))


# ---------------------------------------------------------------- training


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 2-D."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    return (centres[labels] + rng.standard_normal((n, 2))).astype(np.float32), labels


def test_fit_learns_and_keeps_the_best_epoch():
    (x, y), (xv, yv) = blobs(300, 0), blobs(100, 1)
    model = MLP([2, 16, 3], seed=0)
    history = fit(model, Adam(model.parameters(), lr=0.01), x, y, xv, yv, epochs=6,
                  batch_size=32)
    assert len(history.train_loss) == len(history.val_accuracy) == 6
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.best_val_accuracy == max(history.val_accuracy) > 0.9
    assert accuracy(model, xv, yv) == history.best_val_accuracy


def test_fit_rejects_bad_settings():
    (x, y), model = blobs(10, 0), MLP([2, 3], seed=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        fit(model, optimizer, x, y, x, y, epochs=0)
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1, got 2\.5"):
        fit(model, optimizer, x, y, x, y, batch_size=2.5)


def test_blas_threads_keeps_results_and_restores(monkeypatch):
    a = np.random.default_rng(0).standard_normal((64, 50))
    blas = numpy_mlp._openblas()
    before = blas[0]() if blas else None
    with blas_threads(1) as limited:
        inside = a @ a.T
        if limited:
            assert blas[0]() == 1
    assert limited == (blas is not None)
    assert_close(t(inside), t(a @ a.T))
    if blas:
        assert blas[0]() == before
    monkeypatch.setattr(numpy_mlp, "_PROC_MAPS", numpy_mlp.Path("/no/such/maps"))
    assert numpy_mlp._openblas() is None
    with blas_threads(2) as limited:
        assert limited is False
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"), blas_threads(0):
        pass


@pytest.mark.skipif(not numpy_mlp.Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_openblas_lookup_skips_libraries_without_the_thread_setters(monkeypatch, tmp_path):
    maps = numpy_mlp.Path("/proc/self/maps")
    libm = next(line.split()[-1] for line in maps.read_text().splitlines() if "/libm" in line)
    fake = tmp_path / "libnot_openblas.so"  # a library whose name matches but has no setters
    fake.symlink_to(libm)
    fake_maps = tmp_path / "maps"
    fake_maps.write_text(f"7f00-7f01 r-xp 00000000 00:00 0 {fake}\n")
    monkeypatch.setattr(numpy_mlp, "_PROC_MAPS", fake_maps)
    assert numpy_mlp._openblas() is None


# ---------------------------------------------------------------- bad inputs of the layers


def test_layers_reject_bad_input():
    rng = np.random.default_rng(0)
    layer = Dense(3, 2, rng)
    with pytest.raises(ValueError, match="in_features must be an int >= 1, got 0"):
        Dense(0, 2, rng)
    with pytest.raises(ValueError, match="before forward"):
        layer.backward(np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"x must be a NumPy array of shape \(batch, 3\)"):
        layer.forward(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"shape \(batch, 3\) with batch >= 1, got \(3,\)"):
        layer.forward(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="got list"):
        layer.forward([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="floating dtype, got int64"):
        layer.forward(np.zeros((2, 3), np.int64))
    layer.forward(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="grad_out has batch 2 but forward saw batch 4"):
        layer.backward(np.zeros((2, 2), np.float32))
    relu = ReLU()
    with pytest.raises(ValueError, match="before forward"):
        relu.backward(np.zeros(3))
    relu.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"grad_out has shape \(3, 2\)"):
        relu.backward(np.zeros((3, 2)))


def test_softmax_cross_entropy_rejects_bad_input():
    head = SoftmaxCrossEntropy()
    logits = np.zeros((3, 4))
    with pytest.raises(ValueError, match="before forward"):
        head.backward()
    with pytest.raises(ValueError, match=r"logits must be a 2-D array \(batch, classes\), got"):
        head.forward(np.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match=r"labels must be an integer array of shape \(3,\)"):
        head.forward(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="integer array"):
        head.forward(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got values from 0 to 4"):
        head.forward(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="got 3"):
        head.forward(logits, 3)


def test_mlp_and_checks_reject_bad_settings():
    with pytest.raises(ValueError, match="at least input and output widths"):
        MLP([784])
    model = MLP([2, 2], dtype=np.float64)
    with pytest.raises(ValueError, match="max_entries must be None or an int >= 1, got 0"):
        gradient_check(model, np.zeros((1, 2)), np.array([0]), max_entries=0)
    with pytest.raises(ValueError, match="eps must be a number > 0, got 0"):
        numerical_gradient(lambda: 0.0, np.zeros(2), eps=0)


# ---------------------------------------------------------------- optimizers vs torch.optim


OPTIMIZERS = [
    (lambda p: SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda p: SGD(p, lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (lambda p: SGD(p, lr=0.2, momentum=0.5), lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.5)),
    (lambda p: RMSProp(p), lambda p: torch.optim.RMSprop(p)),
    (lambda p: RMSProp(p, lr=0.003, alpha=0.9, eps=1e-6),
     lambda p: torch.optim.RMSprop(p, lr=0.003, alpha=0.9, eps=1e-6)),
    (lambda p: Adam(p), lambda p: torch.optim.Adam(p)),
    (lambda p: Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6),
     lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
]
IDS = ["sgd", "momentum-0.9", "momentum-0.5", "rmsprop", "rmsprop-custom", "adam", "adam-custom"]


@pytest.mark.parametrize(("ours", "theirs"), OPTIMIZERS, ids=IDS)
@pytest.mark.parametrize("shapes", [[(3, 4), (4,)], [(5,), (2, 3, 2)]])
def test_optimizers_match_torch_on_random_gradients(ours, theirs, shapes):
    rng = np.random.default_rng(10)
    params = [rng.standard_normal(shape) for shape in shapes]
    torch_params = [t(p, True) for p in params]
    optimizer, reference = ours(params), theirs(torch_params)
    for _ in range(60):
        grads = [rng.standard_normal(shape) for shape in shapes]
        for p, g in zip(torch_params, grads, strict=True):
            p.grad = t(g)
        reference.step()
        optimizer.step(grads)
    assert optimizer.steps == 60
    for p, p_t in zip(params, torch_params, strict=True):
        assert_close(t(p), p_t.detach())


@pytest.mark.parametrize(("ours", "theirs"), OPTIMIZERS, ids=IDS)
def test_optimizers_match_torch_on_logistic_regression(ours, theirs):
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((40, 6)), (rng.random(40) < 0.5).astype(np.float64)
    run = train_logistic_regression(ours, x, y, steps=50, batch_size=None)
    w, b = torch.zeros(6, dtype=torch.float64, requires_grad=True), torch.zeros(
        1, dtype=torch.float64, requires_grad=True)
    reference = theirs([w, b])
    losses = []
    for _ in range(50):
        reference.zero_grad()
        F.binary_cross_entropy_with_logits(t(x) @ w + b, t(y)).backward()
        reference.step()
        with torch.no_grad():
            losses.append(F.binary_cross_entropy_with_logits(t(x) @ w + b, t(y)).item())
    assert_close(t(run.w), w.detach())
    assert_close(t(run.b), b.detach())
    assert_close(torch.tensor(run.losses), torch.tensor(losses))


def test_logistic_loss_and_grad_match_autograd():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((30, 5)) * 10, (rng.random(30) < 0.3).astype(np.float64)
    w, b = rng.standard_normal(5), rng.standard_normal(1)
    loss, dw, db = logistic_loss_and_grad(w, b, x, y)
    w_t, b_t = t(w, True), t(b, True)
    loss_t = F.binary_cross_entropy_with_logits(t(x) @ w_t + b_t, t(y))
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    assert_close(t(dw), w_t.grad)
    assert_close(t(db), b_t.grad)


def test_sigmoid_is_stable():
    z = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    with np.errstate(over="raise"):
        s = sigmoid(z)
    assert_close(t(s), torch.sigmoid(t(z)))


def test_minibatch_logistic_regression_learns():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((200, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) > 0).astype(np.float64)
    run = train_logistic_regression(lambda p: Adam(p, lr=0.05), x, y, steps=100, batch_size=16)
    assert len(run.losses) == 100
    assert run.losses[-1] < 0.5 * np.log(2)  # log 2 is the loss of the all-zero start


def test_optimizers_reject_bad_input():
    p = [np.zeros(3)]
    with pytest.raises(ValueError, match="params is empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[0\] must be a floating NumPy array, got int64"):
        SGD([np.zeros(3, np.int64)])
    with pytest.raises(ValueError, match=r"params\[0\] must be a floating NumPy array, got list"):
        SGD([[0.0]])
    with pytest.raises(ValueError, match=r"lr must be a number in \(0.0, inf\), got 0"):
        SGD(p, lr=0)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0.0, 1.0\), got 1"):
        SGD(p, momentum=1)
    with pytest.raises(ValueError, match="alpha must be a number"):
        RMSProp(p, alpha=-0.1)
    with pytest.raises(ValueError, match="eps must be a number"):
        RMSProp(p, eps=0.0)
    with pytest.raises(ValueError, match="betas must be a pair"):
        Adam(p, betas=(0.9,))
    with pytest.raises(ValueError, match=r"betas\[1\] must be a number"):
        Adam(p, betas=(0.9, True))
    optimizer = Adam(p)
    with pytest.raises(ValueError, match="got 2 gradients for 1 parameters"):
        optimizer.step([np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(4,\) but params\[0\] has"):
        optimizer.step([np.zeros(4)])
    with pytest.raises(NotImplementedError):
        Optimizer(p, lr=0.1).step([np.zeros(3)])


def test_logistic_helpers_reject_bad_input():
    x, y = np.zeros((4, 3)), np.zeros(4)
    with pytest.raises(ValueError, match=r"need x \(N, D\), w \(D,\), b \(1,\), y \(N,\)"):
        logistic_loss_and_grad(np.zeros(2), np.zeros(1), x, y)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        train_logistic_regression(lambda p: SGD(p), x, y, steps=0)
    with pytest.raises(ValueError, match="batch_size must be None or an int >= 1, got 0"):
        train_logistic_regression(lambda p: SGD(p), x, y, batch_size=0)
