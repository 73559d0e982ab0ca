"""Property-based tests (hypothesis): random shapes (0..4 dims), strided /
reversed / transposed / byte-swapped views, dtypes, axes (int, tuple in any
order, None), special values, both functions, both precisions.

Every C ISA is compared with the pure-NumPy fallback: identical shape, dtype,
NaN/inf pattern (and exact zeros / -infs for -inf inputs), and both are
within the tolerance table of the independent reference.

Reproducible: the "ci" profile (tests/conftest.py) is derandomized; set
HYPOTHESIS_PROFILE=dev for random exploration."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from conftest import C_PARAMS, PY_IMPL  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reference import HAVE_EXTENDED_LD, check_ulp, ld_reference, mp_reference  # noqa: E402

pytestmark = [
    pytest.mark.skipif(PY_IMPL is None, reason="csoftmax._fallback not importable"),
]

FLOAT_DTYPES = [np.float32, np.float64, np.float16]
INT_DTYPES = [np.int8, np.uint8, np.int32, np.int64, np.uint64, np.bool_]


@st.composite
def cases(draw, with_specials=True):
    ndim = draw(st.integers(0, 4))
    max_side = {0: 1, 1: 300, 2: 40, 3: 12, 4: 6}[ndim]
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=ndim, max_size=ndim)))
    dtype = draw(
        st.sampled_from(FLOAT_DTYPES + INT_DTYPES)
        if draw(st.booleans())
        else st.sampled_from(FLOAT_DTYPES)
    )
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 5.0, 40.0, 300.0, 3000.0]))
    p_special = draw(st.sampled_from([0.0, 0.0, 0.02, 0.2, 1.0])) if with_specials else 0.0
    specials = draw(
        st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3, unique=True)
    )
    # layout: start from a bigger array, then slice / reverse / transpose / byteswap
    steps = tuple(draw(st.lists(st.sampled_from([1, 1, 2, -1, -2]), min_size=ndim, max_size=ndim)))
    perm = tuple(draw(st.permutations(range(ndim)))) if ndim else ()
    byteswap = draw(st.booleans()) and np.dtype(dtype).itemsize > 1
    axis_kind = draw(st.sampled_from(["none", "int", "tuple"])) if ndim else "none"
    if axis_kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    elif axis_kind == "tuple":
        axis = tuple(draw(st.permutations(range(ndim)))[: draw(st.integers(1, ndim))])
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axis)
    else:
        axis = None

    rng = np.random.default_rng(seed)
    big_shape = tuple(s * abs(k) for s, k in zip(shape, steps))
    if np.dtype(dtype).kind == "f":
        base = np.asarray(rng.standard_normal(big_shape) * scale)
        if p_special:
            mask = np.asarray(rng.random(big_shape) < p_special)
            base[mask] = rng.choice(specials, size=int(mask.sum()))
        with np.errstate(over="ignore"):
            base = base.astype(dtype)
    elif dtype is np.bool_:
        base = np.asarray(rng.random(big_shape) < 0.5)
    else:
        info = np.iinfo(dtype)
        lo, hi = (info.min, info.max) if scale > 100 else (max(info.min, -50), min(info.max, 50))
        base = np.asarray(rng.integers(lo, hi, size=big_shape, dtype=dtype, endpoint=True))
    view = base[tuple(slice(None, None, k) for k in steps)] if ndim else base
    view = view.transpose(perm) if ndim else view
    if byteswap:
        view = view.astype(view.dtype.newbyteorder("S"))
    # the reference's axis refers to the view's axes; shape is the view's
    return view, axis


def _reference(x, op, axis):
    x64 = np.asarray(x).astype(
        np.float64
    )  # ints/f16/f32 are exact in float64 (uint64 rounds: promotion)
    if HAVE_EXTENDED_LD:
        return ld_reference(x64, op, axis=axis)
    return mp_reference(x64, op, axis=axis)


def _pattern(a):
    a = np.asarray(a, dtype=np.float64)
    return np.isnan(a), np.where(np.isinf(a), a, 0), a == 0


def _compare(op, precision, x, axis, got_c, got_py):
    assert np.shape(got_c) == np.shape(got_py)
    assert np.asarray(got_c).dtype == np.asarray(got_py).dtype
    pc, pp = _pattern(got_c), _pattern(got_py)
    assert np.array_equal(pc[0], pp[0]), "NaN patterns differ"
    assert np.array_equal(pc[1], pp[1]), "infinities differ"
    if np.asarray(x).size and (np.asarray(x).size <= 50_000):
        ref = _reference(x, op, axis)
        res_dtype = np.asarray(got_py).dtype
        for name, got in [("c", got_c), ("python", got_py)]:
            g = np.asarray(got).astype(res_dtype.newbyteorder("="))
            problems = check_ulp(g, ref, op, precision)
            assert not problems, (name, problems)


def _run(impl, op, x, axis, precision):
    with impl.active():
        return impl.call(op, x, axis=axis, precision=precision)


@pytest.mark.slow
@pytest.mark.parametrize("c", C_PARAMS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@settings(max_examples=150)
@given(case=cases(), precision=st.sampled_from(["exact", "fast"]))
def test_c_matches_fallback(c, op, case, precision):
    x, axis = case
    x0 = np.array(x, copy=True)
    got_c = _run(c, op, x, axis, precision)
    got_py = _run(PY_IMPL, op, x, axis, precision)
    np.testing.assert_array_equal(x, x0)  # input untouched
    _compare(op, precision, x, axis, got_c, got_py)
    # -inf inputs in valid rows: exactly 0 / -inf
    if np.asarray(x).dtype.kind == "f" and np.asarray(x).size:
        want = 0.0 if op == "softmax" else -np.inf
        sel = np.isneginf(np.asarray(x, np.float64)) & ~np.isnan(np.asarray(got_py, np.float64))
        assert np.all(np.asarray(got_c, np.float64)[sel] == want)


@pytest.mark.slow
@pytest.mark.parametrize("c", C_PARAMS)
@settings(max_examples=120)
@given(case=cases(), keepdims=st.booleans())
def test_logsumexp_c_matches_fallback(c, case, keepdims):
    x, axis = case
    with c.active():
        got_c = c.logsumexp(x, axis=axis, keepdims=keepdims)
    got_py = PY_IMPL.logsumexp(x, axis=axis, keepdims=keepdims)
    # scipy.special.logsumexp reads a 0-d input as shape (1,)
    want_shape = np.shape(np.sum(np.zeros(np.shape(x) or (1,)), axis=axis, keepdims=keepdims))
    assert np.shape(got_c) == np.shape(got_py) == want_shape
    assert np.asarray(got_c).dtype == np.asarray(got_py).dtype
    pc, pp = _pattern(got_c), _pattern(got_py)
    assert np.array_equal(pc[0], pp[0]) and np.array_equal(pc[1], pp[1])
    if np.asarray(x).size and not keepdims:
        ref = _reference(x, "logsumexp", axis)
        dt = np.asarray(got_py).dtype
        for name, got in [("c", got_c), ("python", got_py)]:
            problems = check_ulp(np.asarray(got, dtype=dt), ref, "logsumexp")
            assert not problems, (name, problems)


@pytest.mark.slow
@pytest.mark.parametrize("c", C_PARAMS + [pytest.param(PY_IMPL, id="python")])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@settings(max_examples=100)
@given(
    case=cases(),
    precision=st.sampled_from(["exact", "fast"]),
    how=st.sampled_from(
        ["in-place", "shifted+1", "shifted-1", "reversed", "strided", "byteswapped"]
    ),
)
def test_out_is_as_if_fresh(c, op, case, precision, how):
    x, axis = case
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.ndim == 0 or x.size == 0:
        return
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    with c.active():
        want = c.call(op, x.copy(), axis=axis, precision=precision)
        if how == "in-place":
            xx, out = x.copy(), None
            out = xx
        elif how in ("shifted+1", "shifted-1"):
            buf = np.empty(x.size + 1, x.dtype)
            if how == "shifted+1":
                buf[:-1] = x.ravel()
                xx, out = buf[:-1].reshape(x.shape), buf[1:].reshape(x.shape)
            else:
                buf[1:] = x.ravel()
                xx, out = buf[1:].reshape(x.shape), buf[:-1].reshape(x.shape)
        elif how == "reversed":
            xx = x.copy()
            out = xx[(slice(None, None, -1),) + (slice(None),) * (x.ndim - 1)]
        elif how == "strided":
            xx = x
            out = np.empty(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)[..., ::2]
        else:
            xx = x
            out = np.empty(x.shape, x.dtype.newbyteorder("S"))
        got = c.call(op, xx, axis=axis, precision=precision, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
