"""where= on softmax, log_softmax and logsumexp (DESIGN.md section 3), JAX's semantics.

Excluded entries give 0 / -inf whatever they hold and are left out of the
sums; a row with no included entry gives 0 / -inf (logsumexp -inf), never
NaN; the special-value rules of section 1 apply to the included entries.
The reference (reference.masked_reference) is mpmath on each row's included
entries alone -- an independent formulation that never sees a mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import assert_ulp, masked_reference
from test_layouts import INPUT_KINDS, _inputs

OPS = ["softmax", "log_softmax", "logsumexp"]
SOFT = ["softmax", "log_softmax"]
DT = [np.float32, np.float64]
FILL = {"softmax": 0.0, "log_softmax": -np.inf, "logsumexp": -np.inf}
AXES = [None, 0, 1, 2, -1, (0, 2), (2, 0), (1, 2), (0, 1, 2)]


def call(impl, op, x, precision="exact", **kw):
    if op == "logsumexp":
        return impl.fn(op)(x, **kw)
    return impl.fn(op)(x, precision=precision, **kw)


def random_mask(rng, shape, density=0.6):
    return rng.random(shape) < density


@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_matches_reference_every_axis(impl, precision, op, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(dtype)
    where = random_mask(rng, x.shape)
    where[1, :, 2] = False  # some fully excluded rows along axis 1
    for axis in AXES:
        got = call(impl, op, x, precision, axis=axis, where=where)
        ref = masked_reference(x, where, op, axis=axis)
        assert_ulp(np.asarray(got), ref, op, precision, msg=f"axis={axis}")


@pytest.mark.parametrize("op", OPS)
def test_keepdims_logsumexp_and_dtypes(impl, op):
    rng = np.random.default_rng(6)
    for dtype in (np.float16, np.int32, np.bool_):
        x = (rng.standard_normal((4, 6)) * 3).astype(dtype)
        where = random_mask(rng, x.shape)
        got = np.asarray(call(impl, op, x, axis=1, where=where))
        expected_dtype = np.float16 if dtype == np.float16 else np.float64
        assert got.dtype == expected_dtype
        ref = masked_reference(x.astype(np.float64), where, op, axis=1)
        assert_ulp(got, ref, op, dtype=expected_dtype)
    if op == "logsumexp":
        x = rng.standard_normal((4, 6))
        where = random_mask(rng, x.shape)
        got = impl.logsumexp(x, axis=1, keepdims=True, where=where)
        assert got.shape == (4, 1)
        assert_ulp(got, masked_reference(x, where, op, axis=1, keepdims=True), op)


@pytest.mark.parametrize("op", OPS)
def test_excluded_values_are_ignored(impl, op):
    """NaN, +inf, -inf and huge values under the mask change nothing, bitwise."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 8))
    where = random_mask(rng, x.shape)
    where[:, 0] = True
    poisoned = x.copy()
    hidden = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308])
    poisoned[~where] = np.resize(hidden, (~where).sum())
    clean = x.copy()
    clean[~where] = 0.0
    for axis in (1, 0, None):
        a = np.asarray(call(impl, op, poisoned, axis=axis, where=where))
        b = np.asarray(call(impl, op, clean, axis=axis, where=where))
        np.testing.assert_array_equal(a, b)
        assert not np.isnan(a).any()


@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_fully_excluded_rows(impl, op, dtype):
    x = np.array([[1.0, np.nan, np.inf], [-np.inf, -np.inf, 2.0], [3.0, 4.0, 5.0]], dtype)
    where = np.zeros(x.shape, bool)
    where[2, 1] = True
    got = np.asarray(call(impl, op, x, axis=1, where=where))
    if op == "logsumexp":
        np.testing.assert_array_equal(got, np.array([-np.inf, -np.inf, 4.0], dtype))
    else:
        one = 1.0 if op == "softmax" else 0.0
        expected = np.full(x.shape, FILL[op], dtype)
        expected[2, 1] = one
        np.testing.assert_array_equal(got, expected)
    # a whole array excluded, and a 0-d one
    nothing = np.zeros(x.shape, bool)
    got = np.asarray(call(impl, op, x, where=nothing))
    np.testing.assert_array_equal(got, np.full(got.shape, FILL[op], dtype))
    got = np.asarray(call(impl, op, dtype(7.0), where=False))
    assert got.dtype == dtype and got.item() == FILL[op]
    got = np.asarray(call(impl, op, dtype(7.0), where=True))
    assert got.item() == (7.0 if op == "logsumexp" else 1.0 if op == "softmax" else 0.0)


@pytest.mark.parametrize("op", SOFT)
def test_special_values_among_included(impl, op):
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [1.0, nan, 2.0, 3.0],  # NaN included: NaN at included, fill at excluded
            [1.0, inf, 2.0, nan],  # +inf included
            [-inf, -inf, 5.0, nan],  # only -inf included
            [-inf, 0.0, 2.0, nan],  # -inf among finite: 0 / -inf there
        ]
    )
    where = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 0]], bool)
    got = impl.fn(op)(x, axis=1, where=where)
    fill = FILL[op]
    for r in range(3):
        assert np.isnan(got[r][where[r]]).all(), r
        assert (got[r][~where[r]] == fill).all(), r
    ref = masked_reference(x, where, op, axis=1)
    assert_ulp(got[3:], masked_reference(x[3:], where[3:], op, axis=1), op)
    assert got[3, 0] == fill and got[3, 3] == fill
    assert np.isfinite(ref.hi[3, 1:3]).all()


def test_logsumexp_special_values(impl):
    inf, nan = np.inf, np.nan
    x = np.array([[1.0, nan, 2.0], [1.0, inf, nan], [-inf, -inf, nan], [inf, nan, 0.0]])
    where = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 0, 1]], bool)
    got = impl.logsumexp(x, axis=1, where=where)
    assert np.isnan(got[0]) and got[1] == inf and got[2] == -inf and got[3] == inf


@pytest.mark.parametrize("op", OPS)
def test_broadcasting(impl, op):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 5))
    for where in (
        random_mask(rng, (5,)),
        random_mask(rng, (4, 1)),
        random_mask(rng, (1, 4, 5)),
        random_mask(rng, (3, 1, 1)),
        np.bool_(False),
        [True, False, True, True, False],
    ):
        full = np.broadcast_to(where, x.shape)
        for axis in (2, 1, (0, 2)):
            got = np.asarray(call(impl, op, x, axis=axis, where=where))
            expected = np.asarray(call(impl, op, x, axis=axis, where=np.array(full)))
            np.testing.assert_array_equal(got, expected)
            assert_ulp(got, masked_reference(x, full, op, axis=axis), op)


@pytest.mark.parametrize("op", OPS)
def test_masked_arrays(impl, op):
    rng = np.random.default_rng(9)
    data = rng.standard_normal((4, 6))
    mask = random_mask(rng, data.shape, 0.3)
    data[mask] = np.nan  # what a masked array often hides
    x = np.ma.array(data, mask=mask)
    got = call(impl, op, x, axis=1)
    assert type(got) is np.ndarray or np.isscalar(got)
    np.testing.assert_array_equal(got, call(impl, op, data, axis=1, where=~mask))
    explicit = random_mask(rng, data.shape)
    np.testing.assert_array_equal(
        call(impl, op, x, axis=1, where=explicit),
        call(impl, op, data, axis=1, where=~mask & explicit),
    )
    # no mask at all (nomask) reads as the plain data
    plain = np.ma.array(rng.standard_normal((4, 6)))
    np.testing.assert_array_equal(call(impl, op, plain, axis=1), call(impl, op, plain.data, axis=1))


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("op", OPS)
def test_layouts(impl, op, kind):
    """Every input layout of test_layouts, with a mask of another layout."""
    x = dict(_inputs(np.float64, np.random.default_rng(1)))[kind]
    before = np.array(x, copy=True)
    rng = np.random.default_rng(2)
    masks = {
        "c": random_mask(rng, x.shape),
        "f": np.asfortranarray(random_mask(rng, x.shape)),
        "strided": random_mask(rng, (x.shape[0] * 2, x.shape[1]))[::-2],
    }
    for name, where in masks.items():
        where_before = where.copy()
        for axis in (None, 0, 1, (1, 0)):
            got = np.asarray(call(impl, op, x, axis=axis, where=where))
            ref = masked_reference(np.array(x, np.float64), where, op, axis=axis)
            assert_ulp(
                got.astype(np.float64),
                ref,
                op,
                dtype=np.float64,
                msg=f"{kind} mask {name} axis={axis}",
            )
        np.testing.assert_array_equal(where, where_before)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("op", SOFT)
def test_out(impl, op):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((6, 7))
    where = random_mask(rng, x.shape)
    where[2] = False
    expected = impl.fn(op)(x, axis=1, where=where)
    out = np.full_like(x, 42.0)
    assert impl.fn(op)(x, axis=1, where=where, out=out) is out
    np.testing.assert_array_equal(out, expected)
    strided = np.full((6, 14), 42.0)[:, ::2]
    impl.fn(op)(x, axis=1, where=where, out=strided)
    np.testing.assert_array_equal(strided, expected)
    inplace = x.copy()
    assert impl.fn(op)(inplace, axis=1, where=where, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)
    column = np.asfortranarray(x)
    out = np.empty_like(column)
    impl.fn(op)(column, axis=0, where=where, out=out)
    np.testing.assert_array_equal(out, impl.fn(op)(x, axis=0, where=where))


def test_logsumexp_with_b(impl):
    """where=False entries drop out like b == 0; with return_sign too."""
    rng = np.random.default_rng(11)
    a = rng.standard_normal((5, 6))
    b = rng.standard_normal((5, 6))
    where = random_mask(rng, a.shape)
    where[3] = False
    poisoned = a.copy()
    poisoned[~where] = np.nan
    for axis in (1, 0, None):
        got = impl.logsumexp(poisoned, axis=axis, b=np.abs(b), where=where)
        expected = impl.logsumexp(a, axis=axis, b=np.where(where, np.abs(b), 0))
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
        got, sign = impl.logsumexp(poisoned, axis=axis, b=b, where=where, return_sign=True)
        expected, expected_sign = impl.logsumexp(
            a, axis=axis, b=np.where(where, b, 0), return_sign=True
        )
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(sign, expected_sign)
    # a masked array with b
    got = impl.logsumexp(np.ma.array(a, mask=~where), axis=1, b=2.0)
    np.testing.assert_allclose(
        got, impl.logsumexp(a, axis=1, b=np.where(where, 2.0, 0)), rtol=1e-15, atol=0
    )


@pytest.mark.parametrize("op", SOFT)
def test_with_temperature_and_dtype(impl, op):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 9)) * 5
    where = random_mask(rng, x.shape)
    got = impl.fn(op)(x, axis=1, where=where, temperature=1 / 3)
    assert_ulp(got, masked_reference(x, where, op, axis=1, temperature=1 / 3), op)
    got = impl.fn(op)(x, axis=1, where=where, dtype=np.float32)
    assert got.dtype == np.float32
    assert_ulp(got, masked_reference(x.astype(np.float32), where, op, axis=1), op)


def test_errors(impl):
    x = np.ones((3, 4))
    for op in OPS:
        fn = impl.fn(op)
        with pytest.raises(TypeError, match="where"):
            fn(x, axis=1, where=np.ones((3, 4), int))
        with pytest.raises(TypeError, match="where"):
            fn(x, axis=1, where="yes")
        with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
            fn(x, axis=1, where=np.ones((3, 5), bool))
        with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
            fn(x, axis=1, where=np.ones((2, 3, 4), bool))  # where may not widen x
        with pytest.raises(TypeError):
            fn(x + 0j, axis=1, where=np.ones((3, 4), bool))


def test_jax_agrees_if_installed(impl):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 7))
    where = random_mask(rng, x.shape)
    where[0, 0] = True
    expected = np.asarray(jax.nn.softmax(x, axis=1, where=where))
    expected = np.where(where, expected, 0.0)  # JAX leaves excluded entries unspecified
    np.testing.assert_allclose(impl.softmax(x, axis=1, where=where), expected, rtol=1e-13)
    expected = np.asarray(jax.nn.logsumexp(x, axis=1, where=where))
    np.testing.assert_allclose(impl.logsumexp(x, axis=1, where=where), expected, rtol=1e-13)
