"""Special values per reduced slice ("row"), with poisoned rows mixed among
clean ones and the poison at every position relative to the vector widths
(first, last, tail lane, either side of 4/8/16/32/64 lanes and of a 1K block).

| row holds                     | softmax  | log_softmax |
| some -inf among finite values | 0 there  | -inf there  |
| only -inf                     | NaN row  | NaN row     |
| any NaN or +inf               | NaN row  | NaN row     |

logsumexp follows scipy.  No RuntimeWarning is ever emitted (every test here
runs with all warnings as errors); a poisoned row never affects another row
(clean rows are checked against the reference *and* bitwise against the same
call with the poison replaced by clean data)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import scipy_call
from reference import NoReference, check_ulp, reference

SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129, 1025]
LONG_SIZES = [4097, 70_001]
KINDS = [
    "ninf",
    "ninf-many",
    "ninf-all",
    "ninf-all-but-one",
    "nan",
    "pinf",
    "nan+ninf",
    "pinf+ninf",
    "pinf+nan",
    "pinf-all",
    "nan-all",
]


def positions(n):
    ps = {0, 1, n - 1, n - 2, n // 2}
    for w in (4, 8, 16, 32, 64, 1024):
        ps |= {w - 1, w, w + 1}
    return sorted(p for p in ps if 0 <= p < n)


def poison(row, kind, p):
    n = row.size
    r = row.copy()
    if kind == "ninf":
        r[p] = -np.inf
    elif kind == "ninf-many":
        r[p::3] = -np.inf
    elif kind == "ninf-all":
        r[:] = -np.inf
    elif kind == "ninf-all-but-one":
        keep = r[p]
        r[:] = -np.inf
        r[p] = keep
    elif kind == "nan":
        r[p] = np.nan
    elif kind == "pinf":
        r[p] = np.inf
    elif kind == "nan+ninf":
        r[p] = np.nan
        r[(p + 1) % n] = -np.inf if n > 1 else np.nan
    elif kind == "pinf+ninf":
        r[p] = np.inf
        r[(p + 1) % n] = -np.inf if n > 1 else np.inf
    elif kind == "pinf+nan":
        r[p] = np.inf
        r[(p + n // 2) % n] = np.nan
    elif kind == "pinf-all":
        r[:] = np.inf
    elif kind == "nan-all":
        r[:] = np.nan
    else:
        raise ValueError(kind)
    return r


def build(n, kind, dtype, seed=0):
    """Rows: clean, poisoned@p0, clean, poisoned@p1, ..., clean.  Returns
    (x, clean_x, poisoned_row_indices)."""
    rng = np.random.default_rng(seed + n)
    ps = positions(n) if kind not in ("ninf-all", "pinf-all", "nan-all") else [0]
    rows, clean, bad = [], [], []
    for p in ps:
        c = rng.standard_normal(n) * 3
        rows.append(c)
        clean.append(c)
        c2 = rng.standard_normal(n) * 3
        rows.append(poison(c2, kind, p))
        clean.append(c2)
        bad.append(len(rows) - 1)
    c = rng.standard_normal(n) * 3
    rows.append(c)
    clean.append(c)
    return np.array(rows, dtype=dtype), np.array(clean, dtype=dtype), bad


_REFS = {}


def _ref(x, op, axis, key=None):
    if key is not None and (key, op, axis) in _REFS:
        return _REFS[(key, op, axis)]
    try:
        r = reference(x, op, axis=axis)
    except NoReference as e:
        pytest.skip(str(e))
    if key is not None:
        _REFS[(key, op, axis)] = r
    return r


def check_rows(impl, op, precision, x, clean_x, axis, key=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = impl.call(op, x, axis=axis, precision=precision)
        got_clean = impl.call(op, clean_x, axis=axis, precision=precision)
    ref = _ref(x, op, axis, key)
    problems = check_ulp(got, ref, op, precision)
    # exact zeros / -infs where the input is -inf in an otherwise valid row
    ninf = np.isneginf(x)
    valid = ~np.isnan(ref.hi)
    if op != "logsumexp":
        want = 0.0 if op == "softmax" else -np.inf
        sel = ninf & valid
        if not np.all(got[sel] == want):
            problems.append(
                f"-inf inputs must give exactly {want}; got {got[sel][got[sel] != want][:5]}"
            )
        # a poisoned row never affects another row: clean rows bitwise equal
        same = np.all(
            np.equal(x, clean_x) | (np.isnan(x) & np.isnan(clean_x)), axis=axis, keepdims=True
        )
        same = np.broadcast_to(same, x.shape)
        if not np.array_equal(got[same], got_clean[same]):
            problems.append(
                "clean rows differ bitwise from the same call without the poisoned rows"
            )
    return problems


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_poisoned_rows(impl, precision, op, dtype, kind):
    failures = []
    for n in SIZES:
        x, clean_x, _ = build(n, kind, dtype)
        key = (n, kind, np.dtype(dtype).name)
        for p in check_rows(impl, op, precision, x, clean_x, axis=1, key=key):
            failures.append(f"rows n={n}: {p}")
        # columns: the same data transposed, reduced along axis 0
        for p in check_rows(
            impl,
            op,
            precision,
            np.ascontiguousarray(x.T),
            np.ascontiguousarray(clean_x.T),
            axis=0,
            key=key,
        ):
            failures.append(f"columns n={n}: {p}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "kind", ["ninf", "ninf-all-but-one", "nan", "pinf", "pinf+ninf", "ninf-all"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_poisoned_long_rows(impl, precision, op, dtype, kind):
    failures = []
    for n in LONG_SIZES:
        rng = np.random.default_rng(n)
        ps = sorted({0, 1023, 1024, 4095, 4096, n // 2, n - 1} & set(range(n)))
        if kind == "ninf-all":
            ps = [0]
        clean = rng.standard_normal((len(ps) + 1, n)).astype(dtype)
        x = clean.copy()
        for i, p in enumerate(ps):
            x[i] = poison(clean[i], kind, p)
        for p in check_rows(
            impl, op, precision, x, clean, axis=1, key=("long", n, kind, np.dtype(dtype).name)
        ):
            failures.append(f"n={n}: {p}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values_single_row_all_positions(impl, precision, dtype):
    """One 1-D row (the single-row path, not the batched one)."""
    failures = []
    for n in [2, 3, 8, 9, 16, 17, 33, 65, 1025]:
        base = np.random.default_rng(n).standard_normal(n).astype(dtype)
        for p in positions(n):
            for kind, expect in [("nan", "nan"), ("pinf", "nan"), ("ninf", "zero")]:
                x = poison(base, kind, p)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    s = impl.call("softmax", x, precision=precision)
                    ls = impl.call("log_softmax", x, precision=precision)
                if expect == "nan":
                    if not (np.all(np.isnan(s)) and np.all(np.isnan(ls))):
                        failures.append(f"n={n} {kind}@{p}: not an all-NaN row")
                else:
                    if not (
                        s[p] == 0 and ls[p] == -np.inf and np.all(np.isfinite(np.delete(ls, p)))
                    ):
                        failures.append(f"n={n} -inf@{p}: softmax {s[p]}, log_softmax {ls[p]}")
                    elif abs(np.sum(s, dtype=np.float64) - 1) > 1e-5:
                        failures.append(f"n={n} -inf@{p}: softmax does not sum to 1")
    assert not failures, "\n".join(failures[:30])


def test_all_neg_inf_and_single_neg_inf(impl, precision):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dt in [np.float32, np.float64, np.float16]:
            x = np.array([-np.inf, -np.inf], dt)
            assert np.all(np.isnan(impl.call("softmax", x, precision=precision)))
            assert np.all(np.isnan(impl.call("log_softmax", x, precision=precision)))
            x = np.array([-np.inf, 0.0, -np.inf], dt)
            np.testing.assert_array_equal(impl.call("softmax", x, precision=precision), [0, 1, 0])
            np.testing.assert_array_equal(
                impl.call("log_softmax", x, precision=precision), [-np.inf, 0, -np.inf]
            )
            x = np.array([np.inf, -np.inf], dt)
            assert np.all(np.isnan(impl.call("softmax", x, precision=precision)))
            x = np.array([np.inf, np.inf], dt)
            assert np.all(np.isnan(impl.call("log_softmax", x, precision=precision)))


# ---------------------------------------------------------------- logsumexp

LSE_CASES = [
    [],
    [-np.inf, -np.inf],
    [np.inf, 1.0],
    [np.inf, -np.inf],
    [np.inf, np.inf],
    [np.nan, 1.0],
    [np.inf, np.nan],
    [-np.inf, np.nan],
    [-np.inf, 2.0],
    [-np.inf],
    [np.inf],
    [np.nan],
    [1e308, 1e308],
    [-1e308, -1e308],
]


@pytest.mark.parametrize("case", range(len(LSE_CASES)), ids=[repr(c) for c in LSE_CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logsumexp_special_values_like_scipy(impl, dtype, case):
    with np.errstate(over="ignore"):
        x = np.array(LSE_CASES[case], dtype=dtype)
    want = scipy_call("logsumexp", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = impl.logsumexp(x)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logsumexp_poisoned_rows_like_scipy(impl, dtype):
    failures = []
    for kind in KINDS:
        for n in [1, 3, 8, 9, 17, 33, 1025]:
            x, _, _ = build(n, kind, dtype)
            for axis, xx in [(1, x), (0, np.ascontiguousarray(x.T))]:
                want = scipy_call("logsumexp", xx, axis=axis)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    got = impl.logsumexp(xx, axis=axis)
                try:
                    np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps)
                except AssertionError as e:
                    failures.append(f"{kind} n={n} axis={axis}: {e}")
    assert not failures, "\n".join(failures[:10])
