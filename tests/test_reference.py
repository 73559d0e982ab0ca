"""The oracles themselves: the longdouble reference agrees with mpmath, the
ULP helper can fail, and the peers (scipy) really are off on the data the
accuracy tests use -- so the 4-ULP bar is meaningful, not vacuous."""

import numpy as np
import pytest
from conftest import scipy_call
from reference import (
    HAVE_EXTENDED_LD,
    LD,
    TOLERANCES,
    Ref,
    assert_ulp,
    check_ulp,
    ld_reference,
    max_ulp,
    mp_reference,
    tolerance,
)

needs_ld = pytest.mark.skipif(
    not HAVE_EXTENDED_LD, reason="np.longdouble is not extended precision here"
)


def _rel_diff(a: Ref, b: Ref, scale_logs=False):
    """|a - b| / max(|a|, tiny) computed on the float64 pairs (finite parts).
    With scale_logs (logsumexp), relative to max(|a|, |log s|): m + log(s)
    cancels, and both references round log(s) (to 2**-64 and 2**-166), which
    the tolerance table allows for anyway (c_spread * u * |log s|)."""
    fin = np.isfinite(a.hi)
    assert np.array_equal(np.isnan(a.hi), np.isnan(b.hi))
    assert np.array_equal(a.hi[~fin & ~np.isnan(a.hi)], b.hi[~fin & ~np.isnan(b.hi)])
    A = a.hi[fin].astype(LD) + a.lo[fin].astype(LD)
    B = b.hi[fin].astype(LD) + b.lo[fin].astype(LD)
    den = np.maximum(np.abs(A), LD(1e-300))
    if scale_logs:
        den = np.maximum(den, np.abs(a.logs[fin]).astype(LD))
    return float(np.max(np.abs(A - B) / den)) if A.size else 0.0


def _cases():
    rng = np.random.default_rng(1)
    yield "normal", rng.standard_normal((3, 200))
    yield "spread1000", rng.uniform(-1000, 1000, (2, 300))
    yield "hard700", np.concatenate([[700.0], rng.standard_normal(99) * 1e-3])
    yield "near0-f64", np.array([0.0, -30.0, -31.0])
    yield "near0-f32", np.array([0.0, -20.0, -21.0], dtype=np.float32)
    yield "shifted-near0", np.array([1000.0, 970.0, 969.0, 1000 - 1e-9])
    yield "ties", np.array([5.0, 5.0, 5.0, 1.0, 5.0])
    yield "f32-spread100", rng.uniform(-100, 100, 400).astype(np.float32)
    yield "neg-inf", np.array([[-np.inf, 0.5, 2.0, -np.inf], [1, 2, 3, 4]])
    yield "specials", np.array([[np.nan, 1.0], [np.inf, 1.0], [-np.inf, -np.inf], [3.0, -np.inf]])
    yield "cancel-lse", np.array([-np.log(2.0), -np.log(2.0)])


@needs_ld
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("case", [c for c, _ in _cases()])
def test_longdouble_reference_agrees_with_mpmath(case, op):
    x = dict(_cases())[case]
    a = mp_reference(x, op, axis=-1)
    b = ld_reference(x, op, axis=-1)
    # longdouble carries 64 bits: agree to ~2**-60 relative (the 4-ULP bar of
    # float64 is 2**-50, so the reference's own error is invisible).
    assert _rel_diff(a, b, op == "logsumexp") < 2.0**-58, (case, op)


@needs_ld
def test_longdouble_reference_axes_agree_with_mpmath():
    x = np.random.default_rng(2).standard_normal((3, 4, 5)) * 10
    for axis in [None, 0, 1, -1, (0, 2), (2, 0), (1, 2)]:
        for op in ["softmax", "log_softmax", "logsumexp"]:
            a = mp_reference(x, op, axis=axis)
            b = ld_reference(x, op, axis=axis)
            assert a.hi.shape == b.hi.shape
            assert _rel_diff(a, b, op == "logsumexp") < 2.0**-58, (axis, op)


def test_reference_known_values():
    # softmax([0, log 3]) = [1/4, 3/4]; log_softmax([0,0]) = -log 2
    r = mp_reference(np.array([0.0, np.log(3.0)]), "softmax")
    assert abs(r.hi[0] - 0.25) < 1e-16 and abs(r.hi[1] - 0.75) < 1e-16
    r = mp_reference(np.array([0.0, 0.0]), "log_softmax")
    assert r.hi[0] == -np.log(2.0)
    r = mp_reference(np.array([1.0, 1.0]), "logsumexp")
    assert r.hi[()] == 1 + np.log(2.0)


# ----------------------------------------------------------------- the helper


def test_assert_ulp_accepts_within_and_rejects_beyond():
    x = np.random.default_rng(3).standard_normal(64)
    ref = mp_reference(x, "softmax")
    exact = ref.hi.copy()
    assert_ulp(exact, ref, "softmax")
    for k, ok in [(3, True), (4, True), (6, False), (100, False)]:
        bumped = exact.copy()
        bumped[17] = exact[17] + k * np.spacing(exact[17])
        assert (check_ulp(bumped, ref, "softmax") == []) == ok, k
    with pytest.raises(AssertionError):
        bad = exact.copy()
        bad[0] = np.nan
        assert_ulp(bad, ref, "softmax")
    with pytest.raises(AssertionError):
        assert_ulp(exact[:-1], ref, "softmax")


def test_assert_ulp_subnormal_rule():
    ref = Ref(np.array([1e-310, 0.0, 0.5]), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    assert check_ulp(np.array([0.0, 0.0, 0.5]), ref, "softmax") == []  # flush ok
    assert check_ulp(np.array([2e-308, 0.0, 0.5]), ref, "softmax") == []  # anything in [0, tiny]
    assert check_ulp(np.array([3e-308, 0.0, 0.5]), ref, "softmax") != []  # above tiny
    assert check_ulp(np.array([-1e-310, 0.0, 0.5]), ref, "softmax") != []  # wrong sign


def test_assert_ulp_fast_term_scales_with_spread():
    x = np.concatenate([[80.0], np.random.default_rng(4).standard_normal(30) * 1e-3]).astype(
        np.float32
    )
    ref = mp_reference(x, "softmax")
    got = scipy_call("softmax", x)  # the classical algorithm
    assert check_ulp(got, ref, "softmax", "exact") != []
    assert check_ulp(got, ref, "softmax", "fast") == []


def test_tolerance_table_is_complete():
    for op in ["softmax", "log_softmax"]:
        for dt in [np.float16, np.float32, np.float64, LD]:
            for p in ["exact", "fast"]:
                t = tolerance(op, dt, p)
                assert t.reason
    assert TOLERANCES[("softmax", "float32", "exact")].k_ulp == 4
    assert TOLERANCES[("log_softmax", "float64", "exact")].k_ulp == 4


# ---------------------------------------------- peers: the bar is meaningful


def test_scipy_float32_spread100_is_off_by_tens_of_ulp():
    x = np.random.default_rng(5).uniform(-100, 100, 4000).astype(np.float32)
    ref = ld_reference(x, "softmax") if HAVE_EXTENDED_LD else mp_reference(x[:500], "softmax")
    got = scipy_call("softmax", x if HAVE_EXTENDED_LD else x[:500])
    assert max_ulp(got, ref) > 20  # about 65 ULP; we demand <= 4


def test_scipy_float64_hard_spread_is_off_by_hundreds_of_ulp():
    x = np.concatenate([[700.0], np.random.default_rng(6).standard_normal(200) * 1e-3])
    ref = mp_reference(x, "softmax")
    assert max_ulp(scipy_call("softmax", x), ref) > 50


@pytest.mark.parametrize(
    "x",
    [np.array([0.0, -30.0, -31.0]), np.array([0.0, -20.0, -21.0], np.float32)],
    ids=["f64", "f32"],
)
def test_scipy_log_softmax_near_zero_is_off_by_millions_of_ulp(x):
    ref = mp_reference(x, "log_softmax")
    assert max_ulp(scipy_call("log_softmax", x), ref) > 1e5


def test_scipy_is_wrong_on_uint8():
    # contract: promoted before subtracting; scipy wraps around (and returns float16)
    got = scipy_call("softmax", np.array([1, 2, 3], np.uint8))
    want = mp_reference(np.array([1.0, 2.0, 3.0]), "softmax").hi
    assert not np.allclose(np.asarray(got, np.float64), want, equal_nan=False)
