"""cross_entropy: PyTorch's semantics (torch.nn.functional.cross_entropy in float64 for every
option combination, gradients against torch autograd), accuracy against mpmath, the C kernel
against the NumPy implementation, argument errors, special values, dtypes, layouts, and bitwise
identical results for every thread count."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import native

from csoftmax import _cross_entropy

needs_c = pytest.mark.skipif(native is None, reason="csoftmax._native is not built")


def ce_of(impl):
    """The implementation's cross_entropy: the C wrapper, or the NumPy one for the fallback."""
    return native.cross_entropy if impl.kind == "c" else _cross_entropy.cross_entropy


def ulps(got, want, dtype):
    """|got - want| in units of the spacing of `want` in `dtype` (NaN equal NaN)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        error = np.abs(got - want) / spacing
    return np.where(both_nan | (got == want), 0.0, error)


def problem(rng, shape=(6, 5), axis=-1, probability=False, ignored=True):
    logits = rng.standard_normal(shape) * 3
    n = shape[axis]
    rows_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    if probability:
        target = rng.random(shape)
        target /= target.sum(axis=axis, keepdims=True)
    else:
        target = rng.integers(0, n, rows_shape)
        if ignored and target.size > 1:
            target.flat[1] = -100
    return logits, target


# ------------------------------------------------------------------------------- torch

CASES = [
    # (probability, weighted, ignored, label_smoothing, reduction, axis)
    case
    for case in itertools.product(
        (False, True),
        (False, True),
        (False, True),
        (0.0, 0.25, 1.0),
        ("mean", "sum", "none"),
        (-1, 1),
    )
    if not (case[0] and case[2])  # ignore_index applies to class indices only
]


@pytest.mark.parametrize("probability, weighted, ignored, smoothing, reduction, axis", CASES)
def test_matches_torch(impl, rng, probability, weighted, ignored, smoothing, reduction, axis):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    shape = (4, 5, 3) if axis == 1 else (7, 5)
    logits, target = problem(rng, shape, axis, probability, ignored)
    weight = rng.random(5) + 0.1 if weighted else None
    loss, grad = ce_of(impl)(
        logits,
        target,
        axis,
        weight=weight,
        reduction=reduction,
        label_smoothing=smoothing,
        return_grad=True,
    )
    plain = ce_of(impl)(
        logits, target, axis, weight=weight, reduction=reduction, label_smoothing=smoothing
    )

    x = torch.tensor(logits, requires_grad=True)
    # torch's class axis is 1
    torch_target = torch.tensor(target)
    expected = functional.cross_entropy(
        x,
        torch_target,
        weight=None if weight is None else torch.tensor(weight),
        reduction=reduction,
        label_smoothing=smoothing,
    )
    (expected.sum() if reduction == "none" else expected).backward()

    assert np.array_equal(loss, plain)  # the gradient costs nothing in the loss's bits
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == expected.shape
    else:
        assert isinstance(loss, np.float64)
    np.testing.assert_allclose(loss, expected.detach().numpy(), rtol=1e-14, atol=1e-15)
    assert grad.shape == logits.shape and grad.dtype == np.float64
    # A * softmax - a cancels where the two are close: an absolute bar, a few ULP of the largest
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-13, atol=2e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float32_against_torch_float64(impl, rng, reduction):
    torch = pytest.importorskip("torch")
    logits = (rng.standard_normal((50, 300)) * 8).astype(np.float32)
    target = rng.integers(0, 300, 50)
    weight = rng.random(300).astype(np.float32) + 0.5
    loss, grad = ce_of(impl)(
        logits, target, weight=weight, reduction=reduction, label_smoothing=0.1, return_grad=True
    )
    assert np.asarray(loss).dtype == np.float32 and grad.dtype == np.float32
    x = torch.tensor(logits.astype(np.float64), requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        x,
        torch.tensor(target),
        weight=torch.tensor(weight.astype(np.float64)),
        reduction=reduction,
        label_smoothing=0.1,
    )
    (expected.sum() if reduction == "none" else expected).backward()
    assert ulps(loss, expected.detach().numpy(), np.float32).max() <= 2
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-5, atol=2e-8)


def test_torch_special_values(impl):
    torch = pytest.importorskip("torch")
    inf, nan = np.inf, np.nan
    logits = np.array(
        [[nan, 1, 2], [inf, 1, 2], [-inf, -inf, -inf], [-inf, 0, 1], [0, -inf, 1], [nan, 1, 2]]
    )
    target = np.array([0, 1, 2, 1, 1, -100])
    for smoothing in (0.0, 0.2):
        got = ce_of(impl)(logits, target, reduction="none", label_smoothing=smoothing)
        want = torch.nn.functional.cross_entropy(
            torch.tensor(logits), torch.tensor(target), reduction="none", label_smoothing=smoothing
        ).numpy()
        np.testing.assert_array_equal(got, want)
    probability = np.array([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    rows = np.array([[0, -inf, 1], [0, -inf, 1]])
    got = ce_of(impl)(rows, probability, reduction="none")
    want = torch.nn.functional.cross_entropy(
        torch.tensor(rows), torch.tensor(probability), reduction="none"
    ).numpy()
    np.testing.assert_array_equal(got, want)  # 0 * -inf is NaN in torch too


def test_torch_empty_and_zero_weight(impl):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    f = ce_of(impl)
    empty = np.zeros((0, 4))
    assert np.isnan(f(empty, np.zeros(0, np.int64)))
    assert f(empty, np.zeros(0, np.int64), reduction="sum") == 0
    assert np.isnan(f(empty, np.zeros((0, 4))))
    assert f(empty, np.zeros(0, np.int64), reduction="none").shape == (0,)
    logits = np.arange(12.0).reshape(3, 4)
    target = np.array([0, 1, -100])
    weight = np.zeros(4)
    x = torch.tensor(logits, requires_grad=True)
    expected = functional.cross_entropy(x, torch.tensor(target), weight=torch.tensor(weight))
    expected.backward()
    loss, grad = f(logits, target, weight=weight, return_grad=True)
    assert np.isnan(loss) and np.isnan(expected.item())
    np.testing.assert_array_equal(grad, x.grad.numpy())  # NaN rows, 0 for the ignored row
    loss, grad = f(logits, np.full(3, -100), return_grad=True)
    assert np.isnan(loss) and not grad.any()


def test_one_dimensional_logits(impl):
    torch = pytest.importorskip("torch")
    logits = np.array([1.0, 2.0, 3.0])
    for reduction in ("mean", "sum", "none"):
        got = ce_of(impl)(logits, np.int64(2), reduction=reduction)
        want = torch.nn.functional.cross_entropy(
            torch.tensor(logits), torch.tensor(2), reduction=reduction
        ).numpy()
        assert np.shape(got) == () and got == pytest.approx(want, rel=1e-15)


# ------------------------------------------------------------------------------- accuracy


def mp_distances(mpmath, row):
    """lse(row) - row[c] for every c, exact at any spread: (max - x_c) + log1p(sum of the
    other terms exp(x - max)), the largest term left out of the sum."""
    xs = [mpmath.mpf(float(v)) for v in row]
    top = max(range(len(xs)), key=lambda c: xs[c])
    log_sum = mpmath.log1p(
        mpmath.fsum(mpmath.exp(v - xs[top]) for c, v in enumerate(xs) if c != top)
    )
    return [(xs[top] - v) + log_sum for v in xs]


def test_mpmath_spot_checks(impl):
    mpmath = pytest.importorskip("mpmath")
    rng = np.random.default_rng(7)
    with mpmath.workdps(60):
        for dtype, spread in itertools.product((np.float32, np.float64), (1.0, 30.0, 1000.0)):
            logits = (rng.standard_normal((8, 40)) * spread).astype(dtype)
            logits[0, 3] = logits[0].max() + 40  # targeted: a loss near 0
            target = rng.integers(0, 40, 8)
            target[0] = 3
            weight = rng.random(40) + 0.5
            smoothed = ce_of(impl)(
                logits, target, weight=weight, reduction="none", label_smoothing=0.1
            )
            plain = ce_of(impl)(logits, target, reduction="none")
            for row in range(8):
                distances = mp_distances(mpmath, logits[row])
                t = target[row]
                nll = distances[t] * mpmath.mpf(float(weight[t]))
                smooth = mpmath.fsum(d * mpmath.mpf(float(w)) for d, w in zip(distances, weight))
                # torch's coefficients, as doubles: 1 - 0.1 and 0.1 / 40
                exact = mpmath.mpf(1 - 0.1) * nll + mpmath.mpf(0.1 / 40) * smooth
                assert ulps(smoothed[row], float(exact), dtype) <= 2, (dtype, spread, row)
                assert ulps(plain[row], float(distances[t]), dtype) <= 2, (dtype, spread, row)


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape, axis",
    [
        ((33, 1000), -1),
        ((300, 10), -1),
        ((130, 64), -1),
        ((70, 65), 1),
        ((3, 40, 37), 1),
        ((2, 70000), 1),
        ((5, 9000, 2), 1),
    ],
)
def test_kernel_matches_numpy(c_impl, rng, dtype, shape, axis):
    """The fused kernel against the NumPy implementation (which materialises log_softmax), on
    short rows (the row-tile path, n <= 64), rows, column tiles (inner > 1) and rows longer
    than the kernels' 128 KiB blocks."""
    for probability, smoothing in ((False, 0.0), (False, 0.3), (True, 0.1)):
        logits, target = problem(rng, shape, axis, probability)
        logits = logits.astype(dtype)
        weight = rng.random(shape[axis]) + 0.5
        for reduction in ("none", "mean"):
            got, grad = native.cross_entropy(
                logits,
                target,
                axis,
                weight=weight,
                reduction=reduction,
                label_smoothing=smoothing,
                return_grad=True,
            )
            want, want_grad = _cross_entropy.cross_entropy(
                logits,
                target,
                axis,
                weight=weight,
                reduction=reduction,
                label_smoothing=smoothing,
                return_grad=True,
            )
            assert ulps(got, want, dtype).max() <= 4
            scale = np.abs(want_grad).max()
            np.testing.assert_allclose(grad, want_grad, atol=scale * 8 * np.finfo(dtype).eps)


# ------------------------------------------------------------------------------- dtypes, layouts


def test_dtypes(impl, rng):
    logits, target = problem(rng)
    f = ce_of(impl)
    for dtype, result in (
        (np.float16, np.float16),
        (np.float32, np.float32),
        (np.int32, np.float64),
        (np.longdouble, np.longdouble),
    ):
        x = (logits * 3).astype(dtype)
        loss, grad = f(x, target, return_grad=True)
        assert type(loss) is np.dtype(result).type
        assert grad.dtype == result and grad.shape == x.shape
        assert f(x, target, reduction="none").dtype == result
        want = _cross_entropy.cross_entropy(x.astype(np.float64), target)
        assert abs(float(loss) - want) <= 4 * np.finfo(result).eps * abs(want) + 1e-300
    for target_dtype in (np.uint8, np.int16, np.int32, np.uint64):
        t = np.abs(target).astype(target_dtype) % 5
        assert f(logits, t) == f(logits, t.astype(np.int64))


def test_layouts_and_inputs_untouched(impl, rng):
    logits, target = problem(rng, (6, 7, 5), axis=1)
    f = ce_of(impl)
    want, want_grad = f(logits, target, 1, return_grad=True, label_smoothing=0.2)
    variants = [np.asfortranarray(logits), logits.astype(">f8"), logits[::-1][::-1]]
    big = np.zeros((12, 7, 10))
    big[::2, :, ::2] = logits
    variants.append(big[::2, :, ::2])
    for x in variants:
        copy = x.copy()
        got, grad = f(x, target, 1, return_grad=True, label_smoothing=0.2)
        assert got == want and np.array_equal(grad, want_grad)
        assert np.array_equal(x, copy)
    moved = np.moveaxis(logits, 1, -1)
    got = f(moved, target, -1, label_smoothing=0.2)
    assert ulps(got, want, np.float64) <= 2
    assert f(logits.tolist(), target.tolist(), 1, label_smoothing=0.2) == want


# ------------------------------------------------------------------------------- errors


def test_errors(impl):
    f = ce_of(impl)
    logits = np.zeros((3, 4))
    target = np.array([0, 1, 2])
    with pytest.raises(IndexError, match="target 4 "):
        f(logits, np.array([0, 4, 1]))
    with pytest.raises(IndexError, match="target -1 "):
        f(logits, np.array([0, -1, 1]))
    assert f(logits, np.array([0, -1, 1]), ignore_index=-1) == f(logits[[0, 2]], [0, 1])
    with pytest.raises(ValueError, match="shape"):
        f(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="shape"):
        f(logits, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="bool"):
        f(logits, np.array([True, False, True]))
    with pytest.raises(TypeError):
        f(logits, np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="weight"):
        f(logits, target, weight=np.ones(3))
    with pytest.raises(TypeError, match="weight"):
        f(logits, target, weight=np.ones(4, complex))
    with pytest.raises(ValueError, match="reduction"):
        f(logits, target, reduction="average")
    for bad in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="label_smoothing"):
            f(logits, target, label_smoothing=bad)
    with pytest.raises(TypeError, match="label_smoothing"):
        f(logits, target, label_smoothing="0.1")
    with pytest.raises(TypeError, match="ignore_index"):
        f(logits, target, ignore_index=1.5)
    with pytest.raises(ValueError, match="dimension"):
        f(np.float64(1.0), target)
    with pytest.raises(np.exceptions.AxisError):
        f(logits, target, axis=2)
    with pytest.raises(TypeError, match="axis"):
        f(logits, target, axis=(0, 1))
    with pytest.raises(TypeError):
        f(logits.astype(complex), target)
    with pytest.raises(TypeError):
        f(logits.astype(object), target)


def test_ignore_index_any_value(impl, rng):
    """Rows whose target equals ignore_index (in range or not) drop out of the loss and the mean."""
    f = ce_of(impl)
    logits, target = problem(rng, ignored=False)
    for ignore in (3, 7, -5):
        t = target.copy()
        t[2] = ignore
        kept = t != ignore
        for reduction in ("sum", "mean"):
            want = _cross_entropy.cross_entropy(logits[kept], t[kept], reduction=reduction)
            got = f(logits, t, ignore_index=ignore, reduction=reduction)
            assert got == pytest.approx(want, rel=1e-15)


# ------------------------------------------------------------------------------- threads


@needs_c
@pytest.mark.parametrize("shape, axis", [((300, 700), -1), ((8000, 20), -1), ((40, 300, 20), 1)])
def test_bitwise_for_every_thread_count(c_impl, rng, shape, axis):
    before = native.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            native.set_num_threads(threads)
            for probability in (False, True):
                logits, target = problem(np.random.default_rng(3), shape, axis, probability)
                logits = logits.astype(np.float32)
                results.append(
                    (
                        threads,
                        probability,
                        native.cross_entropy(
                            logits, target, axis, label_smoothing=0.1, return_grad=True
                        ),
                        native.cross_entropy(logits, target, axis, reduction="none"),
                    )
                )
        first = {p: r for t, p, *r in results if t == 1}
        for _threads, probability, (loss, grad), losses in results:
            (want_loss, want_grad), want_losses = first[probability]
            assert loss.tobytes() == want_loss.tobytes()
            assert grad.tobytes() == want_grad.tobytes()
            assert losses.tobytes() == want_losses.tobytes()
    finally:
        native.set_num_threads(before)
