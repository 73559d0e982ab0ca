"""Accuracy against the independent references (tests/reference.py), for
every implementation, float32 and float64, softmax and log_softmax, both
precisions: exact mode within 4 ULP (the contract's bar), fast mode within
the classical algorithm's spread-proportional bound (reference.TOLERANCES).

Sizes straddle every vector width (1..70), unroll (127..129, 255..257) and
the long-row block sizes (powers of two from 1K to 64K elements, and a
single row of ~300_000 elements spanning several blocks)."""

from __future__ import annotations

import functools
import zlib

import numpy as np
import pytest
from reference import (
    HAVE_EXTENDED_LD,
    NoReference,
    check_ulp,
    ld_reference,
    mp_reference,
    reference,
)

DTYPES = [np.float32, np.float64]
OPS = ["softmax", "log_softmax"]

SIZE_GROUPS = {
    "1-70": list(range(1, 71)),
    "127-129": [127, 128, 129],
    "255-257": [255, 256, 257],
    "1023-1025": [1023, 1024, 1025],
    "2047-2049": [2047, 2048, 2049],
    "4095-4097": [4095, 4096, 4097],
    "8191-8193": [8191, 8192, 8193],
    "16383-16385": [16383, 16384, 16385],
    "32767-32769": [32767, 32768, 32769],
    "65535-65537": [65535, 65536, 65537],
    "131071-131073": [131071, 131073],
    "300007": [300_007],
}
BIG = {"16383-16385", "32767-32769", "65535-65537", "131071-131073", "300007"}


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


@functools.cache
def _ref_cached(key, op, axis):
    try:
        return reference(_DATA[key], op, axis=axis)
    except NoReference as e:
        pytest.skip(str(e))


_DATA: dict = {}


def data(key, make):
    """Deterministic input registered under key (so references are cached
    across implementations and precisions)."""
    if key not in _DATA:
        x = make(_rng(*key))
        x.setflags(write=False)
        _DATA[key] = x
    return _DATA[key]


def run(impl, op, precision, key, x, axis=-1):
    got = impl.call(op, x, axis=axis, precision=precision)
    assert isinstance(got, np.ndarray)
    assert got.dtype == x.dtype, (got.dtype, x.dtype)
    assert got.shape == x.shape
    return check_ulp(got, _ref_cached(key, op, axis), op, precision)


def check_all(results):
    failures = [f"[{label}] " + "; ".join(p) for label, p in results if p]
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------ N(0,1) rows


@pytest.mark.parametrize("group", list(SIZE_GROUPS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_normal_single_row(impl, precision, op, dtype, group):
    results = []
    for n in SIZE_GROUPS[group]:
        key = ("normal1", np.dtype(dtype).name, n)
        x = data(key, lambda r, n=n: r.standard_normal(n).astype(dtype))
        results.append((f"n={n}", run(impl, op, precision, key, x)))
    check_all(results)


@pytest.mark.parametrize("group", [g for g in SIZE_GROUPS if g not in {"131071-131073", "300007"}])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_normal_many_rows(impl, precision, op, dtype, group):
    results = []
    rows = 2 if group in BIG else 5
    for n in SIZE_GROUPS[group]:
        key = ("normalR", np.dtype(dtype).name, n, rows)
        x = data(key, lambda r, n=n: (r.standard_normal((rows, n)) * 3).astype(dtype))
        results.append((f"shape={x.shape}", run(impl, op, precision, key, x, axis=1)))
    check_all(results)


# ------------------------------------------------------- hard data rows

SHORT = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 100, 257]
LONG = [1025, 4097, 70_001, 300_007]


def _hard(kind, dtype, n):
    f32 = np.dtype(dtype) == np.float32

    def make(r):
        if kind == "logits90-100":  # a naive exp(x) overflows
            x = r.uniform(90, 100, n)
        elif kind == "spread1000":
            x = r.uniform(-1000, 1000, n)
        elif kind == "spread100":  # scipy float32: ~65 ULP
            x = r.uniform(-100, 100, n)
        elif kind == "finegrid":
            # one large logit and many small ones with fine ULPs: x - max is
            # not representable, the results stay in the normal range.
            S = 80.0 if f32 else 700.0
            x = r.standard_normal(n) * 1e-3
            x[r.integers(n)] = S
        elif kind == "near-ties":
            x = 1.0 + r.integers(0, 4, n) * np.finfo(dtype).eps
        elif kind == "exact-ties":
            x = np.where(r.random(n) < 0.5, 5.0, r.standard_normal(n))
        elif kind == "dominant":
            x = r.standard_normal(n)
            x[r.integers(n)] = 60.0 if f32 else 300.0
        elif kind == "dominant-extreme":
            x = r.standard_normal(n)
            x[r.integers(n)] = 1e30 if f32 else 1e300
        elif kind == "large-offset":  # exact x - max matters: ulp(1e6) is coarse
            x = 1e6 + r.standard_normal(n) * 3
        elif kind == "tiny-values":
            x = r.standard_normal(n) * 1e-30
        else:
            raise ValueError(kind)
        return x.astype(dtype)

    return make


HARD = [
    "logits90-100",
    "spread1000",
    "spread100",
    "finegrid",
    "near-ties",
    "exact-ties",
    "dominant",
    "dominant-extreme",
    "large-offset",
    "tiny-values",
]


@pytest.mark.parametrize("kind", HARD)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_hard_rows(impl, precision, op, dtype, kind):
    results = []
    for n in SHORT + LONG:
        key = ("hard", kind, np.dtype(dtype).name, n)
        x = data(key, _hard(kind, dtype, n))
        results.append((f"n={n}", run(impl, op, precision, key, x)))
    # several rows at once (the multi-row path), with different maxima per row
    for n in [3, 33, 1000]:
        key = ("hardR", kind, np.dtype(dtype).name, n)
        x = data(
            key,
            lambda r, n=n: np.stack(
                [_hard(kind, dtype, n)(np.random.default_rng(i)) for i in range(7)]
            ),
        )
        results.append((f"shape={x.shape}", run(impl, op, precision, key, x, axis=1)))
    check_all(results)


# -------------------------------------------- log_softmax outputs near 0

NEAR0 = {
    "f64": (np.float64, [0.0, -30.0, -31.0]),
    "f32": (np.float32, [0.0, -20.0, -21.0]),
    "f64-shifted": (np.float64, [1000.0, 970.0, 969.0]),
    "f32-shifted": (np.float32, [100.0, 80.0, 79.0]),
    "f64-deep": (np.float64, [0.0, -700.0, -36.0]),
    "f32-deep": (np.float32, [0.0, -87.0, -16.0]),
    # every non-maximal exp is below the normal range, their sum is not:
    # log_softmax of the max is a *normal* number (-4e-38 / -4e-308) and
    # must not flush to 0 (only results below the normal range may)
    "f32-subnormal-terms": (np.float32, [0.0, -87.5, -87.5, -87.5, -87.5]),
    "f64-subnormal-terms": (np.float64, [0.0, -708.5, -708.5]),
}


@pytest.mark.parametrize("case", list(NEAR0))
def test_log_softmax_near_zero(impl, precision, case):
    dtype, base = NEAR0[case]
    results = []
    for n_extra in [0, 1, 6, 7, 8, 15, 16, 17, 31, 32, 33, 64, 65, 1030]:
        for pos in sorted({0, 1, (len(base) + n_extra) // 2, len(base) + n_extra - 1}):
            row = np.array(base[1:] + [base[1] - 0.5] * n_extra, dtype=dtype)
            row = np.insert(row, min(pos, row.size), dtype(base[0]))
            key = ("near0", case, n_extra, pos)
            x = data(key, lambda r, row=row: row)
            results.append(
                (f"n={x.size} max at {pos}", run(impl, "log_softmax", precision, key, x))
            )
    check_all(results)


@pytest.mark.parametrize("case", list(NEAR0))
def test_log_softmax_near_zero_columns(impl, precision, case):
    """The same rows as columns (axis=0 of (n, inner)): the column kernel's log1p."""
    dtype, base = NEAR0[case]
    results = []
    for n_extra in [0, 5, 40]:
        row = np.array(base + [base[1] - 0.5] * n_extra, dtype=dtype)
        for inner in [1, 2, 3, 7, 8, 9, 16, 17, 33]:
            key = ("near0col", case, n_extra, inner)
            x = data(
                key,
                lambda r, row=row, inner=inner: np.stack(
                    [np.roll(row, k) for k in range(inner)], axis=1
                ),
            )
            results.append(
                (f"shape={x.shape}", run(impl, "log_softmax", precision, key, x, axis=0))
            )
    check_all(results)


def test_logsumexp_of_subnormal_terms(impl):
    """logsumexp([0, -708.5, -708.5]) = log1p(2 e^-708.5) ~ 4e-308: a normal
    number made of two terms below the normal range."""
    for dtype, row in [
        (np.float64, [0.0, -708.5, -708.5]),
        (np.float32, [0.0, -87.5, -87.5, -87.5, -87.5]),
    ]:
        x = np.array(row, dtype)
        got = impl.logsumexp(x)
        problems = check_ulp(np.asarray(got), mp_reference(x, "logsumexp"), "logsumexp")
        assert not problems, (dtype, problems)


@pytest.mark.parametrize("n", [2, 8, 64, 1000, 100_000])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_fast_at_small_spread_is_nearly_exact(impl, op, dtype, n):
    """precision="fast" differs from exact only by rounding x - max once: at a
    spread of about +-0.3 that costs < 1 ULP, so fast must stay within the
    table's bound (4 ULP + 2 u (|x - max| + W)) -- an exp of its own 5-10 ULP
    does not."""
    key = ("smallspread", np.dtype(dtype).name, n)
    x = data(key, lambda r: (r.standard_normal(n) * 0.1).astype(dtype))
    problems = run(impl, op, "fast", key, x)
    assert not problems, problems


# ---------------------------------------------- columns (axis=0 kernels)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 17, 64, 100, 1025, 5000])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_columns(impl, precision, op, dtype, n):
    results = []
    inners = range(1, 34) if n <= 100 else [1, 2, 7, 8, 9, 16, 17, 33]
    for inner in inners:
        key = ("col", np.dtype(dtype).name, n, inner)
        x = data(key, lambda r, inner=inner: (r.standard_normal((n, inner)) * 4).astype(dtype))
        results.append((f"shape={x.shape} axis=0", run(impl, op, precision, key, x, axis=0)))
    check_all(results)


@pytest.mark.parametrize("kind", ["spread1000", "finegrid", "spread100", "dominant"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_columns_hard(impl, precision, op, dtype, kind):
    results = []
    for n, inner in [(3, 5), (17, 8), (33, 17), (200, 33), (1025, 4)]:
        key = ("colhard", kind, np.dtype(dtype).name, n, inner)
        x = data(
            key,
            lambda r, n=n, inner=inner: np.stack(
                [_hard(kind, dtype, n)(np.random.default_rng(i)) for i in range(inner)], axis=1
            ),
        )
        results.append((f"shape={x.shape}", run(impl, op, precision, key, x, axis=0)))
    check_all(results)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_middle_axis(impl, precision, op, dtype):
    results = []
    for shape in [(2, 3, 4), (3, 17, 9), (4, 100, 33), (2, 1, 5), (5, 2000, 3)]:
        key = ("mid", np.dtype(dtype).name, shape)
        x = data(key, lambda r, shape=shape: (r.standard_normal(shape) * 5).astype(dtype))
        results.append((f"shape={shape} axis=1", run(impl, op, precision, key, x, axis=1)))
    check_all(results)


# --------------------------------------------- long rows and their blocks


def _blocky(kind, dtype, n=300_007):
    def make(r):
        if kind == "max-first":
            x = r.standard_normal(n)
            x[3] = 40.0
        elif kind == "max-last":
            x = r.standard_normal(n)
            x[-2] = 40.0
        elif kind == "increasing":  # every block's max beats the previous one
            x = np.linspace(-60.0, 60.0, n)
        elif kind == "decreasing":
            x = np.linspace(60.0, -60.0, n)
        elif kind == "neg-inf-first-block":  # a partial max of -inf must not poison the row
            x = r.standard_normal(n)
            x[:70_000] = -np.inf
        elif kind == "neg-inf-middle-block":
            x = r.standard_normal(n)
            x[131_072:200_000] = -np.inf
        elif kind == "underflowing-blocks":  # whole blocks whose exp underflows
            x = r.standard_normal(n) - 2000.0
            x[150_000] = 0.0
        else:
            raise ValueError(kind)
        return x.astype(dtype)

    return make


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "max-first",
        "max-last",
        "increasing",
        "decreasing",
        "neg-inf-first-block",
        "neg-inf-middle-block",
        "underflowing-blocks",
    ],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_long_row_blocks(impl, precision, op, dtype, kind):
    if not HAVE_EXTENDED_LD:
        pytest.skip("needs an extended-precision np.longdouble for the reference")
    key = ("blocky", kind, np.dtype(dtype).name)
    x = data(key, _blocky(kind, dtype))
    got = impl.call(op, x, axis=-1, precision=precision)
    problems = check_ulp(got, _ref_cached(key, op, -1), op, precision)
    if "neg-inf" in kind:
        want = 0.0 if op == "softmax" else -np.inf
        if not np.all(got[x == -np.inf] == want):
            problems.append(f"-inf entries must give exactly {want}")
    assert not problems, problems


# --------------------------------------------------------------- float16


@pytest.mark.parametrize("op", OPS)
def test_float16_is_computed_in_float32(impl, precision, op):
    # 10000 equal logits: softmax = 1e-4 each.  A float16 running sum sticks
    # at 2048 (1 + 2048 == 2048 in float16), so summing in float16 is visible.
    x = np.zeros(10_000, np.float16)
    got = impl.call(op, x, precision=precision)
    assert got.dtype == np.float16
    problems = check_ulp(got, _f16_ref(op, 10_000), op, precision)
    assert not problems, problems
    r = np.random.default_rng(7)
    for n in [1, 7, 8, 9, 33, 1000, 5000]:
        x = (r.standard_normal(n) * 4).astype(np.float16)
        got = impl.call(op, x, precision=precision)
        assert got.dtype == np.float16
        problems = check_ulp(
            got, ld_reference(x, op) if HAVE_EXTENDED_LD else mp_reference(x, op), op, precision
        )
        assert not problems, (n, problems)


def _f16_ref(op, n):
    from reference import Ref

    v = -np.log(n)
    hi = np.full(n, 1.0 / n if op == "softmax" else v)
    return Ref(hi, np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, np.log(n)))


# ------------------------------------------------------------- logsumexp


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_logsumexp_accuracy(impl, dtype):
    results = []
    for kind in ["normal", "spread1000", "logits90-100", "finegrid", "cancel"]:
        for n in [1, 2, 7, 8, 9, 33, 1000, 70_001]:
            key = ("lse", kind, np.dtype(dtype).name, n)

            def make(r, kind=kind, n=n):
                if kind == "normal":
                    return r.standard_normal(n).astype(dtype)
                if kind == "cancel":  # m ~ -log(n): result near 0
                    return np.full(n, -np.log(n) + 1e-3 * r.standard_normal(n)).astype(dtype)
                return _hard(kind, dtype, n)(r)

            x = data(key, make)
            got = impl.logsumexp(x)
            assert np.ndim(got) == 0 and np.asarray(got).dtype == dtype
            results.append(
                (
                    f"{kind} n={n}",
                    check_ulp(np.asarray(got), _ref_cached(key, "logsumexp", -1), "logsumexp"),
                )
            )
        key = ("lse2", kind, np.dtype(dtype).name)
        x = data(key, lambda r: (r.standard_normal((37, 50)) * 10).astype(dtype))
        for axis in [0, 1]:
            got = impl.logsumexp(x, axis=axis)
            results.append(
                (
                    f"2d axis={axis}",
                    check_ulp(got, _ref_cached(key, "logsumexp", axis), "logsumexp"),
                )
            )
    check_all(results)


# ------------------------------------------------------ extreme magnitudes

_M64 = np.finfo(np.float64).max
_M32 = float(np.finfo(np.float32).max)
EXTREME = {
    "f64": (
        np.float64,
        [
            [_M64, -_M64],
            [_M64, _M64],
            [-_M64, -_M64],
            [_M64, 0.0],
            [-_M64, 0.0],
            [5e-324, -5e-324, 0.0],
            [_M64, _M64 / 2, -_M64 / 2],
            [1e308, -1e308, 0.0],
            [-1e308, -1e308 + 1e292, -1e308 - 1e292],
            [2.2e-308, 1e-310, -2.2e-308],
        ],
    ),
    "f32": (
        np.float32,
        [
            [_M32, -_M32],
            [_M32, _M32],
            [-_M32, 0.0],
            [1e-45, 0.0, -1e-45],
            [3e38, -3e38, 1.0],
            [-3e38, -3e38, -2.9e38],
        ],
    ),
}


@pytest.mark.parametrize("case", list(EXTREME))
@pytest.mark.parametrize("op", OPS + ["logsumexp"])
def test_extreme_magnitudes(impl, precision, op, case):
    """Logits near the overflow threshold: x - max overflows (log_softmax is
    then -inf, its correctly rounded value), exp underflows, no warnings."""
    import warnings

    dtype, rows = EXTREME[case]
    failures = []
    for row in rows:
        x = np.array(row, dtype=dtype)
        for pad in [0, 9, 40]:  # also through the vector loop
            xx = np.concatenate([x, np.full(pad, x.min(), dtype)]) if pad else x
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = impl.call(op, xx, precision=precision)
            ref = reference(xx, op)
            p = check_ulp(np.asarray(got), ref, op, precision)
            if p:
                failures.append(f"{row} + {pad} x min: {p}")
    assert not failures, "\n".join(failures)


# ------------------------------------------- big batches (threaded paths)

BATCHES = [
    ((3000, 37), 1),
    ((37, 3000), 0),
    ((20_000, 3), 1),
    ((100_000, 1), 1),
    ((1, 100_000), 0),
    ((3, 70_001), 1),
    ((2, 3000, 40), 1),
    ((64, 64, 64), 2),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_big_batches(impl, precision, op, dtype):
    """Many rows / many columns: the multi-threaded partitions, checked against the reference."""
    results = []
    for shape, axis in BATCHES:
        key = ("batch", np.dtype(dtype).name, shape)
        x = data(key, lambda r, shape=shape: (r.standard_normal(shape) * 5).astype(dtype))
        results.append((f"shape={shape} axis={axis}", run(impl, op, precision, key, x, axis=axis)))
    check_all(results)
