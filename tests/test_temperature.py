"""temperature= on softmax and log_softmax (DESIGN.md section 3).

The result is the softmax of the *exact* values x / T within the contract's
4-ULP bar: the reference (mp_reference with temperature=T) divides in
mpmath, so a kernel that rounds x / T (or (x - max) / T) once fails it for
wide spreads. Validation: a real scalar (TypeError otherwise), positive and
finite (ValueError otherwise).
"""

from __future__ import annotations

import fractions

import numpy as np
import pytest
from reference import assert_ulp, max_ulp, mp_reference

SOFT = ["softmax", "log_softmax"]
DT = [np.float32, np.float64]
TEMPERATURES = [1e-3, 0.1, 0.7, 1 / 3, 3.0, 1e3]
AWKWARD = [
    2.0**-20,
    1 + 2.0**-52,
    1 - 2.0**-53,
    0.999,
    7.0,
    1e-300,
    1e300,
    5e-324,
    np.float32(0.3),
    3,
    fractions.Fraction(1, 3),
]


def _rows(dtype, scale, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((4, 25)) * scale).astype(dtype)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", SOFT)
def test_exact_x_over_t(impl, op, dtype, temperature):
    for scale in (1.0, 30.0, 1e3):
        x = _rows(dtype, scale)
        got = impl.fn(op)(x, axis=1, temperature=temperature)
        assert got.dtype == dtype
        ref = mp_reference(x, op, axis=1, temperature=temperature)
        assert_ulp(got, ref, op, msg=f"T={temperature} scale={scale}")
        got = impl.fn(op)(np.ascontiguousarray(x.T), axis=0, temperature=temperature)
        assert_ulp(
            got,
            mp_reference(x.T, op, axis=0, temperature=temperature),
            op,
            msg=f"columns T={temperature} scale={scale}",
        )


@pytest.mark.parametrize("temperature", AWKWARD, ids=repr)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", SOFT)
def test_awkward_temperatures(impl, op, dtype, temperature):
    x = _rows(dtype, 5.0, seed=1)
    x[0, :3] = [0.0, np.finfo(dtype).tiny, -np.finfo(dtype).tiny]  # tiny spreads
    x[1, :2] = [np.finfo(dtype).max, -np.finfo(dtype).max]  # a spread beyond the range
    got = impl.fn(op)(x, axis=1, temperature=temperature)
    exact = (
        fractions.Fraction(temperature)
        if isinstance(temperature, fractions.Fraction)
        else float(temperature)
    )
    ref = mp_reference(x, op, axis=1, temperature=_mp_temperature(exact))
    assert_ulp(got, ref, op, msg=f"T={temperature!r}")


def _mp_temperature(t):
    import mpmath

    return mpmath.mpf(t.numerator) / t.denominator if isinstance(t, fractions.Fraction) else t


@pytest.mark.parametrize("op", SOFT)
def test_fast_precision_is_classical(impl, op):
    x = _rows(np.float64, 10.0, seed=2)
    got = impl.fn(op)(x, axis=1, temperature=0.3, precision="fast")
    assert_ulp(got, mp_reference(x, op, axis=1, temperature=0.3), op, "fast")


@pytest.mark.parametrize("op", SOFT)
def test_special_values_and_where(impl, op):
    x = np.array(
        [[1.0, -np.inf, 2.0], [np.nan, 1.0, 2.0], [np.inf, 1.0, 0.0], [-np.inf, -np.inf, -np.inf]]
    )
    got = impl.fn(op)(x, axis=1, temperature=0.25)
    assert np.isnan(got[1:]).all()
    assert got[0, 1] == (0.0 if op == "softmax" else -np.inf)
    assert_ulp(got[:1], mp_reference(x[:1], op, axis=1, temperature=0.25), op)
    where = np.array([[1, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 0]], bool)
    got = impl.fn(op)(x, axis=1, temperature=0.25, where=where)
    assert not np.isnan(got).any()
    # 0-d: T does not matter, x / T is finite where x is
    assert impl.fn(op)(np.float64(1e308), temperature=1e-3) == (1.0 if op == "softmax" else 0.0)


@pytest.mark.parametrize("op", SOFT)
def test_same_as_dividing_where_exact(impl, op):
    """A power-of-two T divides exactly: the result equals softmax(x / T) bitwise."""
    x = _rows(np.float64, 3.0, seed=3)
    for t in (0.25, 2.0, 1024.0):
        np.testing.assert_array_equal(
            impl.fn(op)(x, axis=1, temperature=t), impl.fn(op)(x / t, axis=1)
        )
    np.testing.assert_array_equal(impl.fn(op)(x, axis=1, temperature=1), impl.fn(op)(x, axis=1))


@pytest.mark.parametrize("op", SOFT)
def test_out_and_layouts(impl, op):
    x = _rows(np.float32, 4.0, seed=4)
    expected = impl.fn(op)(x, axis=1, temperature=0.7)
    out = np.empty_like(x)
    assert impl.fn(op)(x, axis=1, temperature=0.7, out=out) is out
    np.testing.assert_array_equal(out, expected)
    inplace = x.copy()
    impl.fn(op)(inplace, axis=1, temperature=0.7, out=inplace)
    np.testing.assert_array_equal(inplace, expected)
    for view in (np.asfortranarray(x), x[:, ::-1], x.astype(x.dtype.newbyteorder())):
        got = impl.fn(op)(view, axis=1, temperature=0.7)
        assert_ulp(got, mp_reference(np.array(view), op, axis=1, temperature=0.7), op)


def test_float32_accuracy_figure(impl):
    """The worst error over a wide sweep stays within the bar (printed with -s)."""
    worst = 0.0
    for dtype in DT:
        for t in TEMPERATURES:
            x = _rows(dtype, 50.0, seed=5)
            for op in SOFT:
                got = impl.fn(op)(x, axis=1, temperature=t)
                worst = max(worst, max_ulp(got, mp_reference(x, op, axis=1, temperature=t)))
    print(f"{impl.id}: worst temperature error {worst:.2f} ULP")
    assert worst <= 4


@pytest.mark.parametrize("op", SOFT)
def test_validation(impl, op):
    x = np.ones(3)
    fn = impl.fn(op)
    for bad in (0, 0.0, -1.0, -0.0, np.inf, -np.inf, np.nan, 10**400):
        with pytest.raises(ValueError, match="temperature"):
            fn(x, temperature=bad)
    for bad in (True, np.True_, 1j, "2", np.array(2.0), [2.0], None, np.complex128(2)):
        with pytest.raises(TypeError, match="temperature"):
            fn(x, temperature=bad)
    for good in (np.float32(2), np.int64(2), fractions.Fraction(1, 2), np.longdouble(2)):
        np.testing.assert_array_equal(fn(x, temperature=good), fn(x))
    with pytest.raises(TypeError):
        impl.logsumexp(x, temperature=2.0)
    with pytest.raises(TypeError):
        fn(x + 1j, temperature=2.0)
