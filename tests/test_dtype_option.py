"""dtype= on softmax and log_softmax (DESIGN.md section 3), as in PyTorch.

Compute in and return the requested floating dtype, as if x.astype(dtype)
came first: the result equals the one for the converted input, bitwise.
float16 is computed in float32 and returned as float16; longdouble runs on
the NumPy path. A non-floating dtype is a TypeError; out= must have the
requested dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import LD, assert_ulp, mp_reference

SOFT = ["softmax", "log_softmax"]
FLOATS = [np.float16, np.float32, np.float64, np.longdouble]
INPUTS = [np.float16, np.float32, np.float64, np.int16, np.int64, np.uint8, np.bool_]


def _x(dtype, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((5, 11)) * 4
    if np.dtype(dtype).kind in "iub":
        values = np.abs(values) if np.dtype(dtype).kind in "ub" else values
        return values.astype(dtype)
    return values.astype(dtype)


@pytest.mark.parametrize("requested", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("source", INPUTS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", SOFT)
def test_as_if_astype_first(impl, op, source, requested):
    x = _x(source)
    for axis in (1, 0, None):
        got = impl.fn(op)(x, axis=axis, dtype=requested)
        assert got.dtype == np.dtype(requested)
        expected = impl.fn(op)(x.astype(requested), axis=axis)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "requested", [np.float16, np.float32, np.float64, np.longdouble], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("op", SOFT)
def test_accuracy_in_the_requested_dtype(impl, op, requested):
    x = _x(np.float64, seed=1)
    got = impl.fn(op)(x, axis=1, dtype=requested)
    converted = x.astype(requested)
    ref = mp_reference(converted, op, axis=1)
    assert_ulp(got, ref, op)


@pytest.mark.parametrize("op", SOFT)
def test_spellings_and_byte_order(impl, op):
    x = _x(np.float64, seed=2)
    expected = impl.fn(op)(x.astype(np.float32), axis=1)
    for spelling in ("float32", "f4", np.float32, np.dtype(np.float32), np.dtype(">f4"), "<f4"):
        got = impl.fn(op)(x, axis=1, dtype=spelling)
        assert got.dtype == np.float32 and got.dtype.isnative
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", SOFT)
def test_out_must_have_the_requested_dtype(impl, op):
    x = _x(np.float64, seed=3)
    out = np.empty(x.shape, np.float32)
    assert impl.fn(op)(x, axis=1, dtype=np.float32, out=out) is out
    np.testing.assert_array_equal(out, impl.fn(op)(x.astype(np.float32), axis=1))
    with pytest.raises(TypeError, match="dtype"):
        impl.fn(op)(x, axis=1, dtype=np.float32, out=np.empty(x.shape))
    half = np.empty(x.shape, np.float16)
    impl.fn(op)(x, axis=1, dtype=np.float16, out=half)
    np.testing.assert_array_equal(half, impl.fn(op)(x.astype(np.float16), axis=1))


@pytest.mark.parametrize("op", SOFT)
def test_input_unchanged_and_overflowing_conversion(impl, op):
    x = np.array([[1e300, 1.0, 2.0], [1.0, 2.0, 3.0], [7e4, 0.0, 1.0]])
    before = x.copy()
    got = impl.fn(op)(x, axis=1, dtype=np.float32)  # 1e300 -> inf: a NaN row, no warning
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all()
    got = impl.fn(op)(x, axis=1, dtype=np.float16)  # 7e4 -> inf in float16
    assert np.isnan(got[2]).all()
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("op", SOFT)
def test_with_where_and_temperature(impl, op):
    x = _x(np.float64, seed=4)
    where = np.random.default_rng(5).random(x.shape) < 0.7
    got = impl.fn(op)(x, axis=1, dtype=np.float32, where=where, temperature=0.7)
    expected = impl.fn(op)(x.astype(np.float32), axis=1, where=where, temperature=0.7)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", SOFT)
def test_special_cases(impl, op):
    assert impl.fn(op)(np.float64(3), dtype=np.float32).dtype == np.float32
    empty = impl.fn(op)(np.empty((0, 3)), axis=1, dtype=np.float16)
    assert empty.shape == (0, 3) and empty.dtype == np.float16
    got = impl.fn(op)([1, 2, 3], dtype=LD)
    assert got.dtype == LD


@pytest.mark.parametrize("op", SOFT)
def test_rejected(impl, op):
    x = np.ones((2, 3))
    for bad in (
        np.int32,
        "i8",
        bool,
        np.complex128,
        object,
        "U3",
        "float99",
        3.5,
        np.dtype([("a", "f8")]),
    ):
        with pytest.raises(TypeError, match="dtype"):
            impl.fn(op)(x, dtype=bad)
    with pytest.raises(TypeError):
        impl.fn(op)(x + 1j, dtype=np.float64)
    with pytest.raises(TypeError):
        impl.fn(op)(np.array(["a"]), dtype=np.float64)  # the input's own dtype is checked
    with pytest.raises(TypeError):
        impl.logsumexp(x, dtype=np.float32)
