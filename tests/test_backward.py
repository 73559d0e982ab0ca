"""softmax_backward, log_softmax_backward and softmax_jacobian (DESIGN.md section 3).

* The vector-Jacobian products against the exact formula in mpmath for the
  given (grad, y) -- tolerances in reference.TOLERANCES with their reasons.
* Against the derivative itself: finite differences of softmax computed in
  mpmath (mpmath.diff at 50 digits), and PyTorch autograd where installed,
  for float32 and float64, with masks and temperature (the VJP of
  softmax(x / T) with respect to x is backward / T).
* Layouts, out= (in place on grad or y), dtypes, shape errors.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from reference import TOLERANCES, _to_mpf, assert_close_to, mp_backward_reference

from csoftmax import _jacobian

BACKWARD = {"softmax_backward": "softmax", "log_softmax_backward": "log_softmax"}
OPS = list(BACKWARD)
DT = [np.float32, np.float64]


def _case(impl, op, dtype, shape=(4, 9), axis=-1, seed=0, where=None, temperature=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    y = impl.fn(BACKWARD[op])(x, axis=axis, where=where, temperature=temperature)
    return x, grad, y


def _row_length(shape, axis):
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
    return int(np.prod([shape[a] for a in axes]))


@pytest.mark.parametrize("dtype", DT + [np.float16], ids=["f32", "f64", "f16"])
@pytest.mark.parametrize("op", OPS)
def test_exact_formula(impl, op, dtype):
    for axis in (-1, 0, None, (0, 2), (2, 1)):
        shape = (3, 4, 5)
        _, grad, y = _case(impl, op, dtype, shape, axis, seed=1)
        got = impl.fn(op)(grad, y, axis=axis)
        assert got.dtype == dtype and got.shape == shape
        hi, lo, cond = mp_backward_reference(grad, y, op, axis=axis)
        assert_close_to(got, hi, lo, cond, op, _row_length(shape, axis), msg=f"axis={axis}")


@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_where(impl, op, dtype):
    rng = np.random.default_rng(2)
    where = rng.random((5, 8)) < 0.6
    where[1] = False
    x, grad, y = _case(impl, op, dtype, (5, 8), axis=1, seed=2, where=where)
    poisoned = grad.copy()
    poisoned[~where] = np.nan
    got = impl.fn(op)(poisoned, y, axis=1, where=where)
    assert (got[~where] == 0).all()
    hi, lo, cond = mp_backward_reference(grad, y, op, axis=1, where=where)
    assert_close_to(got, hi, lo, cond, op, 8)
    masked = impl.fn(op)(np.ma.array(grad, mask=~where), y, axis=1)
    np.testing.assert_array_equal(masked, got)
    # the gradient of a masked softmax is what an unmasked softmax of the
    # included entries alone gives
    keep = where[0]
    alone = impl.fn(op)(grad[0, keep], impl.fn(BACKWARD[op])(x[0, keep]))
    np.testing.assert_allclose(
        got[0, keep], alone, rtol=0, atol=8 * np.finfo(dtype).eps * np.abs(grad).max()
    )


def _mp_vjp(x_row, g_row, op, temperature):
    """J^T g of softmax / log_softmax (of x / T) by mpmath finite differences."""
    xs = [_to_mpf(v) for v in x_row]
    gs = [_to_mpf(v) for v in g_row]

    def forward(values):
        scaled = [v / temperature for v in values]
        m = max(scaled)
        log_total = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in scaled))
        outputs = [v - log_total for v in scaled]
        if op == "softmax_backward":
            outputs = [mpmath.exp(v) for v in outputs]
        return mpmath.fsum(g * o for g, o in zip(gs, outputs))

    result = []
    for j in range(len(xs)):

        def along(t, j=j):
            return forward([v + t if k == j else v for k, v in enumerate(xs)])

        result.append(float(mpmath.diff(along, 0)))
    return np.array(result)


@pytest.mark.parametrize("temperature", [1.0, 0.3, 4.0])
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_finite_differences_mpmath(impl, op, dtype, temperature):
    with mpmath.workdps(50):
        x, grad, y = _case(impl, op, dtype, (3, 6), seed=3, temperature=temperature)
        got = impl.fn(op)(grad, y, axis=-1) / temperature
        expected = np.array([_mp_vjp(x[r], grad[r], op, temperature) for r in range(3)])
    # y itself is within 4 ULP; the product keeps that, scaled by the condition
    atol = 32 * np.finfo(dtype).eps * np.abs(grad).max() / temperature
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_torch_autograd(impl, op, dtype, temperature):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    where = rng.random((6, 10)) < 0.7
    where[:, 0] = True  # torch gives NaN for a fully masked row; we give 0 (tested above)
    x, grad, y = _case(
        impl, op, dtype, (6, 10), axis=1, seed=4, where=where, temperature=temperature
    )
    tx = torch.tensor(x, requires_grad=True)
    masked = tx.masked_fill(torch.tensor(~where), -torch.inf) / temperature
    forward = torch.softmax if op == "softmax_backward" else torch.log_softmax
    out = forward(masked, dim=1)
    out.backward(torch.tensor(np.where(where, grad, 0)))
    expected = tx.grad.numpy()
    got = impl.fn(op)(grad, y, axis=1, where=where) / temperature
    atol = 16 * np.finfo(dtype).eps * np.abs(grad).max() / temperature
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    assert (got[~where] == 0).all()


@pytest.mark.parametrize("op", OPS)
def test_out_in_place_and_layouts(impl, op):
    _, grad, y = _case(impl, op, np.float64, (6, 7), seed=5)
    expected = impl.fn(op)(grad, y, axis=1)
    out = np.empty_like(grad)
    assert impl.fn(op)(grad, y, axis=1, out=out) is out
    np.testing.assert_array_equal(out, expected)
    for target in ("grad", "y"):
        g, s = grad.copy(), y.copy()
        destination = g if target == "grad" else s
        assert impl.fn(op)(g, s, axis=1, out=destination) is destination
        np.testing.assert_array_equal(destination, expected, err_msg=target)
    strided = np.zeros((6, 14))[:, ::2]
    impl.fn(op)(grad, y, axis=1, out=strided)
    np.testing.assert_array_equal(strided, expected)
    buffer = np.zeros(6 * 7 + 1)  # out overlaps grad, shifted by one element
    shifted_grad, out = buffer[:-1].reshape(6, 7), buffer[1:].reshape(6, 7)
    shifted_grad[...] = grad
    impl.fn(op)(shifted_grad, y, axis=1, out=out)
    np.testing.assert_array_equal(out, expected)
    before = (grad.copy(), y.copy())
    for g, s in (
        (np.asfortranarray(grad), y),
        (grad, np.asfortranarray(y)),
        (grad[::-1], y[::-1]),
        (grad.astype(">f8"), y),
    ):
        got = impl.fn(op)(g, s, axis=1)
        np.testing.assert_allclose(
            got, impl.fn(op)(np.array(g), np.array(s), axis=1), rtol=1e-15, atol=1e-17
        )
    np.testing.assert_array_equal(grad, before[0])
    np.testing.assert_array_equal(y, before[1])
    f_y = np.asfortranarray(y)
    out = np.empty_like(f_y)
    impl.fn(op)(np.asfortranarray(grad), f_y, axis=0, out=out)
    np.testing.assert_allclose(out, impl.fn(op)(grad, y, axis=0), rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("op", OPS)
def test_dtypes_and_small_shapes(impl, op):
    y = impl.fn(BACKWARD[op])(np.array([0.5, 1.0, 2.0], np.float32))
    assert impl.fn(op)(np.array([1, 0, 2]), y).dtype == np.float64  # int64 + float32
    assert impl.fn(op)(np.ones(3, np.float32), y).dtype == np.float32
    assert impl.fn(op)(np.ones(3, np.float16), y.astype(np.float16)).dtype == np.float16
    assert impl.fn(op)([True, False, True], [0.2, 0.3, 0.5]).dtype == np.float64
    zero_d = impl.fn(op)(np.float64(2.5), impl.fn(BACKWARD[op])(np.float64(1.0)))
    assert zero_d.shape == () and zero_d == 0.0
    empty = impl.fn(op)(np.empty((0, 4)), np.empty((0, 4)), axis=1)
    assert empty.shape == (0, 4)


@pytest.mark.parametrize("op", OPS)
def test_errors(impl, op):
    fn = impl.fn(op)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        fn(np.ones((3, 4)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"\(4,\).*\(1, 4\)"):
        fn(np.ones(4), np.ones((1, 4)))  # no broadcasting
    with pytest.raises(ValueError, match="shape"):
        fn(np.ones((3, 4)), np.ones((3, 4)), out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="dtype"):
        fn(np.ones((3, 4)), np.ones((3, 4)), out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError):
        fn(np.ones(3) + 1j, np.ones(3))
    with pytest.raises(TypeError):
        fn(np.ones(3, object), np.ones(3))
    with pytest.raises(TypeError, match="where"):
        fn(np.ones(3), np.ones(3), where=np.ones(3))
    with pytest.raises(ValueError, match="where"):
        fn(np.ones(3), np.ones(3), where=np.ones(4, bool))


# ------------------------------------------------------------------- Jacobian


def _mp_jacobian(y_exact_rows):
    n = len(y_exact_rows)
    return [
        [(y_exact_rows[i] if i == j else 0) - y_exact_rows[i] * y_exact_rows[j] for j in range(n)]
        for i in range(n)
    ]


@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
def test_jacobian_exact(impl, dtype):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((2, 5, 3)) * 4).astype(dtype)
    x[0, :, 0] = [20, 0, -3, 1, 0.5]  # an output that rounds to 1 in float32
    tol = TOLERANCES[("softmax_jacobian", np.dtype(dtype).name, "exact")]
    for axis in (1, -1, 0):
        jac = _jacobian.jacobian(impl.softmax, x, axis)
        moved = np.moveaxis(x, axis, -1)
        assert jac.shape == moved.shape + moved.shape[-1:] and jac.dtype == dtype
        flat_x = moved.reshape(-1, moved.shape[-1])
        flat_j = jac.reshape(-1, moved.shape[-1], moved.shape[-1])
        n = flat_x.shape[1]
        with mpmath.workdps(50):
            for row, slice_j in zip(flat_x, flat_j):
                vals = [_to_mpf(v) for v in row]
                total = mpmath.fsum(mpmath.exp(v) for v in vals)
                exact = np.array(_mp_jacobian([mpmath.exp(v) / total for v in vals]), dtype=object)
                ref = np.array([[float(v) for v in line] for line in exact])
                spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
                row_term = tol.c_spread * n * 2.0**-53 / np.finfo(dtype).eps
                allowed = (tol.k_ulp + row_term) * spacing
                err = np.abs(slice_j.astype(np.float64) - ref)
                normal = np.abs(ref) >= np.finfo(dtype).tiny
                assert (err[normal] <= allowed[normal]).all(), (axis, np.max(err / spacing))
    # the diagonal where y rounds to 1: y (1 - y), not y - y*y = 0
    jac = _jacobian.jacobian(impl.softmax, np.array([20.0, 0.0], np.float32))
    assert jac[0, 0] > 0 and jac[0, 0] == -jac[0, 1]


def test_jacobian_matches_backward_and_torch(impl):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 6))
    grad = rng.standard_normal((3, 6))
    jac = _jacobian.jacobian(impl.softmax, x, -1)
    vjp = impl.fn("softmax_backward")(grad, impl.softmax(x, axis=-1), axis=-1)
    np.testing.assert_allclose(np.einsum("rij,ri->rj", jac, grad), vjp, rtol=0, atol=1e-15)
    np.testing.assert_allclose(jac, np.swapaxes(jac, -1, -2), rtol=0, atol=0)  # symmetric
    for r in range(3):
        expected = torch.autograd.functional.jacobian(
            lambda t: torch.softmax(t, dim=0), torch.tensor(x[r])
        ).numpy()
        np.testing.assert_allclose(jac[r], expected, rtol=1e-13, atol=1e-16)


def test_public_jacobian(pkg):
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    jac = pkg.softmax_jacobian(x)
    assert jac.shape == (2, 3, 3)
    np.testing.assert_allclose(jac[1], np.eye(3) / 3 - 1 / 9, rtol=1e-15)
    assert pkg.softmax_jacobian(x, axis=0).shape == (3, 2, 2)
    with pytest.raises(TypeError, match="axis"):
        pkg.softmax_jacobian(x, axis=None)
    with pytest.raises(TypeError, match="axis"):
        pkg.softmax_jacobian(x, axis=(0, 1))
    with pytest.raises(np.exceptions.AxisError):
        pkg.softmax_jacobian(x, axis=2)
    with pytest.raises(TypeError):
        pkg.softmax_jacobian(np.ma.array(x))
    assert pkg.softmax_jacobian(np.float32([1, 2])).dtype == np.float32
    assert pkg.softmax_jacobian(np.empty((2, 0))).shape == (2, 0, 0)
