"""The seed material of issue 5: the two-class case and "can a softmax output be 0?".

* softmax([x, 0])[0] is the logistic sigmoid of x: it equals
  scipy.special.expit(x) within the 4-ULP bar (both are within a few ULP of
  the exact 1 / (1 + exp(-x)); we also check ours against mpmath).
* Mathematically softmax is never 0; in floating point an output is 0 once
  x_i - max < log(smallest subnormal / 2) (it rounds to 0), and subnormal
  (which the contract lets flush to 0) below log(smallest normal). We test at
  those thresholds of float16, float32 and float64, and that log_softmax
  stays finite and accurate there: it keeps the information.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import assert_ulp, mp_reference, tolerance

DT = [np.float16, np.float32, np.float64]
SWEEP = {np.float16: 12.0, np.float32: 90.0, np.float64: 710.0}


def thresholds(dtype):
    """(x - max below which softmax is subnormal, below which it is exactly 0)."""
    info = np.finfo(dtype)
    return math.log(float(info.tiny)), math.log(float(info.smallest_subnormal)) - math.log(2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_two_classes_is_expit(impl, dtype):
    import scipy.special

    x = np.linspace(-SWEEP[dtype], SWEEP[dtype], 2001).astype(dtype)
    x = np.concatenate([x, np.array([0, 1e-30, -1e-30, 0.5, 2.0**-20], dtype)])
    rows = np.stack([x, np.zeros_like(x)], axis=1)
    got = impl.softmax(rows, axis=1)[:, 0]
    expit = scipy.special.expit(x)
    assert expit.dtype == dtype
    ulp = np.abs(got.astype(np.float64) - expit) / np.spacing(np.abs(expit)).astype(np.float64)
    normal = expit >= np.finfo(dtype).tiny
    k = tolerance("softmax", dtype).k_ulp
    assert np.max(ulp[normal]) <= k, np.max(ulp[normal])
    assert (got[~normal] <= np.finfo(dtype).tiny).all()
    assert_ulp(got[::50], _first_column(mp_reference(rows[::50], "softmax", axis=1)), "softmax")


def _first_column(ref):
    for name in ("hi", "lo", "dist", "wdist", "logs"):
        setattr(ref, name, getattr(ref, name)[:, 0])
    return ref


@pytest.mark.parametrize("dtype", DT, ids=["f16", "f32", "f64"])
def test_zero_below_the_underflow_threshold(impl, dtype):
    subnormal_below, zero_below = thresholds(dtype)
    margin = 0.05
    for t, expect in (
        (subnormal_below + margin, "normal"),
        ((subnormal_below + zero_below) / 2, "subnormal"),
        (zero_below - margin, "zero"),
        (zero_below - 100, "zero"),
    ):
        x = np.array([0.0, t], dtype)  # softmax(x)[1] = 1 / (1 + exp(-t)) ~ exp(t)
        p = impl.softmax(x)
        logp = impl.log_softmax(x)
        assert np.isfinite(logp).all() and logp[1] < 0, (t, logp)
        assert_ulp(logp, mp_reference(x, "log_softmax"), "log_softmax", msg=f"t={t}")
        if expect == "normal":
            assert p[1] >= np.finfo(dtype).tiny
            assert_ulp(p, mp_reference(x, "softmax"), "softmax", msg=f"t={t}")
        elif expect == "subnormal":
            assert 0 <= p[1] < np.finfo(dtype).tiny
        else:
            assert p[1] == 0.0, (t, p[1])
        # never a NaN, and the sum still 1 within the bar
        assert abs(float(p.astype(np.float64).sum()) - 1) <= 8 * np.finfo(dtype).eps


def test_thresholds_are_the_documented_ones():
    expected = {
        np.float16: (-9.70, -17.33),
        np.float32: (-87.34, -103.97),
        np.float64: (-708.40, -745.13),
    }
    for dtype, (subnormal_below, zero_below) in expected.items():
        got = thresholds(dtype)
        assert abs(got[0] - subnormal_below) < 0.01 and abs(got[1] - zero_below) < 0.01


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_long_row_far_below(impl, dtype):
    """In a long row too: one entry far below the max is 0, its log_softmax exact."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(dtype)
    x[17] = x.max() + thresholds(dtype)[1] - 1
    assert impl.softmax(x)[17] == 0.0
    logp = impl.log_softmax(x)
    assert_ulp(logp, mp_reference(x, "log_softmax"), "log_softmax")
