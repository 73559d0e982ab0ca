"""Semantics against scipy.special (the oracle for shapes, axes, dtypes,
scalars, lists) and against the contract where the contract says otherwise
(empty inputs, integer promotion, 0-d arrays, rejected dtypes)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from conftest import scipy_call
from reference import LD, assert_ulp, mp_reference

AxisError = getattr(np, "exceptions", np).AxisError
OPS = ["softmax", "log_softmax", "logsumexp"]
SOFT = ["softmax", "log_softmax"]


def _all_axes(ndim):
    yield None
    yield from range(-ndim, ndim)
    for k in range(1, ndim + 1):
        for combo in itertools.combinations(range(ndim), k):
            yield from itertools.permutations(combo)
    if ndim >= 2:  # negative entries in tuples
        yield (-1, 0)
        yield (-2, -1)


SHAPES = [(5,), (1,), (3, 4), (1, 1), (4, 1), (2, 3, 4), (2, 1, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_shapes_and_axes_match_scipy(impl, precision, op, shape, rng):
    x = rng.standard_normal(shape) * 3
    x0 = x.copy()
    axes = list(_all_axes(len(shape)))
    if len(shape) == 4:
        axes = axes[::3]
    for axis in axes:
        got = impl.call(op, x, axis=axis, precision=precision)
        want = scipy_call(op, x, axis=axis)
        assert np.shape(got) == np.shape(want), (axis, np.shape(got), np.shape(want))
        assert np.asarray(got).dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=f"axis={axis}")
        # and the numeric oracle (a tuple axis must reduce over exactly those axes)
        assert_ulp(
            np.asarray(got), mp_reference(x, op, axis=axis), op, precision, msg=f"axis={axis}"
        )
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_keepdims_matches_scipy(impl, shape, keepdims, rng):
    x = rng.standard_normal(shape)
    for axis in _all_axes(len(shape)):
        got = impl.logsumexp(x, axis=axis, keepdims=keepdims)
        want = scipy_call("logsumexp", x, axis=axis, keepdims=keepdims)
        assert np.shape(got) == np.shape(want), axis
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_default_axis_is_whole_array(impl, rng):
    x = rng.standard_normal((3, 4))
    got = impl.softmax(x)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(got, scipy_call("softmax", x), rtol=1e-13)
    np.testing.assert_allclose(impl.log_softmax(x), scipy_call("log_softmax", x), rtol=1e-13)
    np.testing.assert_allclose(impl.logsumexp(x), scipy_call("logsumexp", x), rtol=1e-14)


def test_empty_axis_tuple_like_scipy(impl, precision):
    """axis=() reduces over nothing: every element is its own row (scipy:
    softmax 1, log_softmax 0, logsumexp x; NaN/+-inf -> NaN rows)."""
    x = np.array([[1.0, 2.0], [-np.inf, np.nan], [np.inf, -3.0]])
    for op in OPS:
        got = impl.call(op, x, axis=(), precision=precision)
        want = scipy_call(op, x, axis=())
        assert np.shape(got) == np.shape(want)
        np.testing.assert_array_equal(got, want, err_msg=op)


def test_logsumexp_return_types_like_scipy(impl):
    """Full reductions give a NumPy scalar, as scipy.special.logsumexp does."""
    for x, kw in [
        ([1.0, 2.0], {}),
        (np.ones((2, 3)), {}),
        (np.ones((2, 3)), {"axis": (0, 1)}),
        (np.ones((2, 3)), {"axis": 1}),
        (np.ones((2, 3)), {"keepdims": True}),
        (np.ones(3, np.float32), {}),
        (np.array(2.0), {}),
    ]:
        got = impl.logsumexp(x, **kw)
        want = scipy_call("logsumexp", x, **kw)
        assert type(got) is type(want), (kw, type(got), type(want))
        assert np.asarray(got).dtype == np.asarray(want).dtype


# ---------------------------------------------------------------- 0-d, scalars


@pytest.mark.parametrize("value", [3.0, -1e300, 0.0, 7])
def test_zero_d(impl, precision, value):
    x = np.array(value)
    for op, want in [("softmax", 1.0), ("log_softmax", 0.0)]:
        got = impl.call(op, x, precision=precision)
        assert isinstance(got, np.ndarray) and got.ndim == 0, (op, type(got))
        assert got.dtype == np.float64
        assert got == want
    got = impl.logsumexp(x)
    assert np.ndim(got) == 0 and got == float(value)


def test_zero_d_float32_and_scalars(impl, precision):
    for x, dt in [
        (np.float32(2.5), np.float32),
        (np.array(2.5, np.float16), np.float16),
        (2.5, np.float64),
        (3, np.float64),
        (True, np.float64),
    ]:
        got = impl.call("softmax", x, precision=precision)
        assert np.ndim(got) == 0 and np.asarray(got).dtype == dt and got == 1.0, x
        got = impl.call("log_softmax", x, precision=precision)
        assert np.ndim(got) == 0 and np.asarray(got).dtype == dt and got == 0.0, x


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_zero_d_special_values(impl, precision, value):
    # a 0-d array is a row of one element: NaN/+inf/only -inf -> NaN (as scipy)
    for op in SOFT:
        got = impl.call(op, np.array(value), precision=precision)
        assert np.ndim(got) == 0 and np.isnan(got), (op, got)
    got = impl.logsumexp(np.array(value))
    want = scipy_call("logsumexp", np.array(value))
    np.testing.assert_array_equal(got, want)


def test_zero_d_logsumexp_like_scipy(impl):
    # scipy reads a 0-d `a` as shape (1,): axis=0 / -1 work, keepdims gives (1,)
    for kw in [{}, {"axis": 0}, {"axis": -1}, {"keepdims": True}, {"axis": 0, "keepdims": True}]:
        want = scipy_call("logsumexp", np.array(2.5), **kw)
        got = impl.logsumexp(np.array(2.5), **kw)
        assert np.shape(got) == np.shape(want), kw
        np.testing.assert_array_equal(got, want)


def test_zero_d_axis(impl):
    x = np.array(1.5)
    for op in SOFT:
        assert impl.call(op, x, axis=None) == (1.0 if op == "softmax" else 0.0)
        for axis in [0, -1, 1]:
            with pytest.raises(AxisError):
                impl.call(op, x, axis=axis)


@pytest.mark.parametrize("op", OPS)
def test_lists_and_array_likes(impl, precision, op):
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.array([[0.5, 1.5, -2.0], [3.0, 0.0, 1.0]])

    cases = [
        ([1.0, 2.0, 3.0], None),
        ([[1.0, 2.0], [3.0, 5.0]], 1),
        ([[1.0, 2.0], [3.0, 5.0]], 0),
        ((1.0, 2.0, 3.0), -1),
        ([1, 2, 3], None),  # ints -> float64
        ([True, False], None),
        (ArrayLike(), 1),
        (ArrayLike(), None),
    ]
    for x, axis in cases:
        got = impl.call(op, x, axis=axis, precision=precision)
        want_x = np.asarray(x, dtype=np.float64)
        want = scipy_call(op, want_x, axis=axis)
        assert np.shape(got) == np.shape(want)
        assert np.asarray(got).dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=repr(x))


# -------------------------------------------------------------------- empty


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 3), (2, 0, 4), (0, 0)], ids=str)
def test_empty_softmax(impl, precision, shape):
    for dt in [np.float64, np.float32, np.float16, np.int32]:
        x = np.zeros(shape, dt)
        axes = [None] + list(range(len(shape))) + [tuple(range(len(shape)))]
        for axis in axes:
            for op in SOFT:
                got = impl.call(op, x, axis=axis, precision=precision)
                assert isinstance(got, np.ndarray)
                assert got.shape == shape, (op, axis)
                assert got.dtype == (np.float64 if dt == np.int32 else dt)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 3), (2, 0, 4), (0, 0)], ids=str)
def test_empty_logsumexp(impl, shape):
    x = np.zeros(shape)
    axes = [None] + list(range(len(shape))) + [tuple(range(len(shape)))]
    for axis in axes:
        for keepdims in [False, True]:
            got = impl.logsumexp(x, axis=axis, keepdims=keepdims)
            # (scipy itself raises IndexError for some of these: use NumPy's
            # reduction shape rules as the oracle)
            want = np.sum(x, axis=axis, keepdims=keepdims)
            assert np.shape(got) == np.shape(want), (axis, keepdims)
            # contract: logsumexp of nothing is -inf
            assert np.all(np.asarray(got) == -np.inf), (axis, keepdims, got)


def test_empty_axis_among_nonempty(impl, precision):
    # reducing a non-empty axis of an array that is empty elsewhere
    x = np.zeros((0, 5))
    for op in SOFT:
        assert impl.call(op, x, axis=1, precision=precision).shape == (0, 5)
    assert impl.logsumexp(x, axis=1).shape == (0,)
    np.testing.assert_array_equal(impl.logsumexp(x, axis=0), np.full(5, -np.inf))


# ------------------------------------------------------------- dtype table


@pytest.mark.parametrize(
    "dt", [np.float32, np.float64, np.float16, LD], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("op", OPS)
def test_float_dtypes_preserved(impl, precision, op, dt, rng):
    x = (rng.standard_normal((4, 7)) * 3).astype(dt)
    for axis in [None, 0, 1]:
        got = impl.call(op, x, axis=axis, precision=precision)
        assert np.asarray(got).dtype == dt, (axis, np.asarray(got).dtype)
        assert np.shape(got) == np.shape(scipy_call(op, x.astype(np.float64), axis=axis))
        assert_ulp(
            np.asarray(got),
            mp_reference(x, op, axis=axis),
            op,
            precision if op != "logsumexp" else "exact",
            msg=f"axis={axis}",
        )


def test_longdouble_is_more_precise_than_double(impl, precision):
    # the longdouble path really computes in longdouble (not via float64)
    if np.finfo(LD).nmant < 63:
        pytest.skip("longdouble is double here")
    x = np.array([0.0, LD(1) / 3, -LD(2) / 7, LD(5)], dtype=LD)
    for op in SOFT:
        got = impl.call(op, x, precision=precision)
        assert got.dtype == LD
        ref = mp_reference(x, op)
        err = np.abs((got - ref.hi.astype(LD)) - ref.lo.astype(LD))
        assert np.all(err <= 64 * np.spacing(np.abs(ref.hi).astype(LD))), (op, err)


INT_DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]


@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", OPS)
def test_integer_dtypes_promoted_before_subtracting(impl, precision, op, dt):
    info = np.iinfo(dt) if dt is not np.bool_ else None
    rows = [[1, 0, 1, 1] if dt is np.bool_ else [1, 2, 3, 0]]
    if info is not None:
        rows.append([info.min, info.max, info.min, info.max])  # x - max wraps in dt
        rows.append([info.max, info.max - 1, info.max - 3, info.max - 2])
    for row in rows:
        x = np.array(row, dtype=dt)
        got = impl.call(op, x, precision=precision)
        assert np.asarray(got).dtype == np.float64, np.asarray(got).dtype
        x64 = x.astype(np.float64)
        assert_ulp(
            np.asarray(got),
            mp_reference(x64, op),
            op,
            precision if op != "logsumexp" else "exact",
            msg=repr(x),
        )


def test_uint8_regression_where_scipy_is_wrong(impl, precision):
    got = impl.call("softmax", np.array([1, 2, 3], np.uint8), precision=precision)
    want = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize("dt", [np.complex64, np.complex128], ids=["c64", "c128"])
@pytest.mark.parametrize("op", OPS)
def test_complex_is_identical_to_scipy(impl, precision, op, dt, rng):
    pytest.importorskip("scipy")
    x = (rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))).astype(dt)
    for axis in [None, 0, 1, (0, 1)]:
        try:
            want = scipy_call(op, x, axis=axis)
        except Exception as e:
            with pytest.raises(type(e)):
                impl.call(op, x, axis=axis, precision=precision)
            continue
        got = impl.call(op, x, axis=axis, precision=precision)
        assert np.asarray(got).dtype == np.asarray(want).dtype
        np.testing.assert_array_equal(got, want)


BAD_DTYPES = [
    (np.array([1.0, 2.0], dtype=object), ("object",)),
    (np.array(["a", "b"]), ("<U1", "str", "U1")),
    (np.array([b"a", b"b"]), ("|S1", "bytes", "S1")),
    (np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), ("datetime64",)),
    (np.array([1, 2], dtype="timedelta64[s]"), ("timedelta64",)),
]


@pytest.mark.parametrize(
    "case", range(len(BAD_DTYPES)), ids=["object", "str", "bytes", "datetime", "timedelta"]
)
@pytest.mark.parametrize("op", OPS)
def test_unsupported_dtypes_raise_typeerror_naming_the_dtype(impl, precision, op, case):
    x, names = BAD_DTYPES[case]
    with pytest.raises(TypeError) as ei:
        impl.call(op, x, precision=precision)
    msg = str(ei.value)
    assert any(n in msg for n in names + (str(x.dtype), x.dtype.name)), msg


@pytest.mark.parametrize("op", OPS)
def test_masked_array_reads_as_where(impl, precision, op):
    """DESIGN.md section 3: a masked array is read as where=~mask (tests/test_where.py has more)."""
    x = np.ma.array([1.0, np.nan, 3.0], mask=[0, 1, 0])
    got = impl.call(op, x, precision=precision)
    assert not isinstance(got, np.ma.MaskedArray)
    compressed = impl.call(op, np.array([1.0, 3.0]), precision=precision)
    if op == "logsumexp":
        assert got == compressed
    else:
        np.testing.assert_array_equal(got[[0, 2]], compressed)
        assert got[1] == (0.0 if op == "softmax" else -np.inf)
    # nothing masked: the plain data
    np.testing.assert_array_equal(
        impl.call(op, np.ma.array([1.0, 2.0]), precision=precision),
        impl.call(op, np.array([1.0, 2.0]), precision=precision),
    )


# ----------------------------------------------------------------- logsumexp


def test_logsumexp_b_and_return_sign_match_scipy(impl, rng):
    x = rng.standard_normal((4, 6))
    cases = [
        dict(b=2.0),
        dict(b=rng.uniform(0.1, 2, (4, 6)), axis=1),
        dict(b=rng.uniform(0.1, 2, (6,)), axis=1),
        dict(b=rng.standard_normal((4, 6)), axis=0, return_sign=True),
        dict(b=rng.standard_normal((4, 6)), return_sign=True),
        dict(b=np.zeros((4, 6)), axis=1, return_sign=True),
        dict(axis=1, return_sign=True),
        dict(axis=(0, 1), keepdims=True, return_sign=True),
        dict(b=-1.0, return_sign=True),
    ]
    for kw in cases:
        want = scipy_call("logsumexp", x, **kw)
        got = impl.logsumexp(x, **kw)
        if kw.get("return_sign"):
            assert isinstance(got, tuple) and len(got) == 2
            for g, w in zip(got, want):
                assert np.shape(g) == np.shape(w)
                np.testing.assert_allclose(g, w, rtol=1e-13, err_msg=repr(kw))
        else:
            assert np.shape(got) == np.shape(want)
            np.testing.assert_allclose(got, want, rtol=1e-13, err_msg=repr(kw))


def test_logsumexp_dtypes_match_scipy(impl):
    for dt in [np.float16, np.float32, np.float64, np.int8, np.uint8, LD]:
        x = np.array([1, 0, 1], dtype=dt)
        got = impl.logsumexp(x)
        want = scipy_call("logsumexp", x)
        assert np.asarray(got).dtype == np.asarray(want).dtype, dt
    # bool: the contract's float64 (SciPy < 1.16 raises TypeError for bool input)
    assert np.asarray(impl.logsumexp(np.array([True, False, True]))).dtype == np.float64


# --------------------------------------------------------------- public API


def test_public_functions_are_wired_to_the_reported_backend(pkg, rng):
    """csoftmax.softmax & co. come from the backend show_config() reports."""
    from conftest import fallback_mod, native

    backend = pkg.show_config(mode="dicts")["backend"]
    mod = native if backend == "c" else fallback_mod
    assert mod is not None, backend
    if native is not None and os.environ.get("CSOFTMAX_BACKEND", "").lower() != "python":
        assert backend == "c", "the extension is built but csoftmax runs the python backend"
    x = rng.standard_normal((9, 33)) * 30
    for name in ["softmax", "log_softmax", "logsumexp", "get_num_threads", "set_num_threads"]:
        pub, impl_f = getattr(pkg, name), getattr(mod, name)
        if pub is impl_f:
            continue
        if name in ("softmax", "log_softmax"):  # a wrapper: same bits as the backend
            for p in ["exact", "fast"]:
                np.testing.assert_array_equal(
                    pub(x, axis=1, precision=p), impl_f(x, axis=1, precision=p)
                )
        elif name == "logsumexp":
            np.testing.assert_array_equal(pub(x, axis=1), impl_f(x, axis=1))
        elif name == "get_num_threads":
            assert pub() == impl_f()


def test_signatures_like_scipy(pkg):
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(
        pkg.softmax(x=x, axis=1), scipy_call("softmax", x, axis=1), rtol=1e-15
    )
    np.testing.assert_allclose(
        pkg.log_softmax(x=x, axis=0), scipy_call("log_softmax", x, axis=0), rtol=1e-15
    )
    np.testing.assert_allclose(pkg.softmax(x, 1), scipy_call("softmax", x, axis=1), rtol=1e-15)
    got = pkg.logsumexp(a=x, axis=1, b=None, keepdims=True, return_sign=False)
    np.testing.assert_allclose(got, scipy_call("logsumexp", x, axis=1, keepdims=True), rtol=1e-15)
    got = pkg.logsumexp(x, 1, None, True, True)  # all positional, as scipy allows
    want = scipy_call("logsumexp", x, 1, None, True, True)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-15)
    # out and precision are keyword-only
    with pytest.raises(TypeError):
        pkg.softmax(x, 1, np.empty_like(x))
    with pytest.raises(TypeError):
        pkg.softmax(x, 1, None, "exact")
    assert pkg.softmax(x, precision="exact").shape == x.shape


def test_precision_default_is_exact(impl):
    # exact differs from fast on this row (fast rounds x - max): the default must be exact
    x = np.concatenate([[80.0], np.random.default_rng(9).standard_normal(60) * 1e-3]).astype(
        np.float32
    )
    ref = mp_reference(x, "softmax")
    assert_ulp(impl.softmax(x), ref, "softmax", "exact")
