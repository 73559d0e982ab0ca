"""Independent numeric oracles and the single tolerance table of the suite.

Two references, neither of which shares code or algorithms with csoftmax:

* ``mp_reference``  -- mpmath at 50 significant digits, element by element.
  Slow; for arrays up to a few thousand elements.
* ``ld_reference``  -- vectorised NumPy in ``np.longdouble`` (x87 extended,
  64-bit mantissa on x86-64).  ``x - max`` is carried *exactly* as an
  unevaluated sum ``dh + dl`` (TwoSum in longdouble of two float64 values),
  the sum of the non-maximal terms is kept apart so that ``log1p`` can be
  used for ``log(sum)``, and everything is accumulated in longdouble.  Its
  agreement with mpmath is itself tested (tests/test_reference.py).

Both return a ``Ref``: the reference value as an unevaluated float64 pair
``hi + lo`` (about 106 bits, far more than any result dtype needs), plus
per-element ``dist = |x - max|`` and per-row ``wdist = sum_j p_j |x_j - max|``
(the softmax-weighted mean distance), which the ``precision="fast"`` bound
needs.

ULP error = |got - ref| / spacing(ref rounded to the result dtype).  A
reference below the smallest normal of the result dtype may be returned as
anything in [0, tiny] with the reference's sign ("results below the normal
range may flush to 0", DESIGN.md section 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

try:  # mpmath is a test dependency, but keep the module importable without it
    import mpmath
except ImportError:  # pragma: no cover
    mpmath = None

LD = np.longdouble
#: True where np.longdouble has at least a 64-bit mantissa (x86-64 Linux:
#: 80-bit x87; aarch64 Linux: IEEE quad).  False on e.g. macOS/arm64 and
#: Windows, where longdouble is plain double: the vectorised reference is
#: then not more precise than what it checks, and the tests that need it skip.
HAVE_EXTENDED_LD = np.finfo(LD).nmant >= 63

OPS = ("softmax", "log_softmax", "logsumexp")
U64 = 2.0**-53  # unit roundoff of float64, the accumulation type of the sums


# ---------------------------------------------------------------------------
# The tolerance table.  One entry per (function, result dtype, precision).
#
#   k_ulp      allowed error in ULPs of the result dtype, independent of data
#   c_spread   coefficient of the "classical algorithm" term (fast mode):
#                 softmax:      + (c * u * (|x_i - m| + W) + n * u64) * |ref|      (relative)
#                 log_softmax:  + c * u * (|x_i - m| + W + 1 + log s) + n * u64   (absolute)
#              where u is the unit roundoff of the *compute* dtype, m the row
#              max and W = sum_j p_j |x_j - m| the softmax-weighted mean
#              distance to the max (the error of the row sum).
#   compute    the dtype the computation is carried out in.
#
# Derivation of the fast term: rounding d = x - m once gives an absolute
# error <= ulp(d)/2 <= u |d|; exp turns an absolute error of the argument into
# the same relative error of the result, so exp(fl(d)) has relative error
# u |d| (plus exp's own ~1 ULP, covered by k_ulp); the row sum
# sum_j exp(fl(d_j)) then has relative error sum_j p_j u |d_j| = u W.
# softmax = e_i / s: relative error u (|d_i| + W); log_softmax = d_i - log s:
# absolute error u (|d_i| + W), plus -- the classical algorithm computes
# log(s), not log1p(s - 1) -- the rounding of s (u absolute in log s) and of
# log(s) (u log s).  So near 0 fast log_softmax may be off by millions of ULP,
# exactly like scipy: that is "the classical algorithm's accuracy" which
# fast mode explicitly trades the exact bar for (DESIGN.md section 1).
# Theory gives c = 1; we allow c = 2 for a SIMD exp whose argument reduction
# (d * log2(e)) rounds once more -- still "the classical algorithm" and still
# proportional to the spread.  The n * u64 term is the deterministic bound of
# a plain recursive sum of n positive terms accumulated in float64 (Higham,
# "Accuracy and Stability of Numerical Algorithms", ch. 4: gamma_{n-1}); the
# design accumulates float32 in float64, so for float32 results it is
# negligible, and a float32 kernel summing in float32 over a long row fails
# as it should.  For float64 it is n ULP: the fast bound is loose for long
# rows, by definition of "classical" (the column kernel sums recursively).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tol:
    k_ulp: float
    c_spread: float
    compute: type
    reason: str


_F16_EXACT = (
    "computed in float32 (<= 4 float32 ULP = 2**-11 float16 ULP) then rounded "
    "once to float16 (<= 0.5 ULP): 1 float16 ULP"
)
_LD_WHY = (
    "no contract bar for longdouble (NumPy path); we require it to be at least "
    "as good as float64's bar: 4 float64 ULP = 4 * 2**11 longdouble ULP"
)

TOLERANCES: dict[tuple[str, str, str], Tol] = {
    # --- exact: the contract's bar (DESIGN.md section 1, "Accuracy") --------
    ("softmax", "float64", "exact"): Tol(4, 0, np.float64, "contract: <= 4 ULP for any spread"),
    ("softmax", "float32", "exact"): Tol(4, 0, np.float32, "contract: <= 4 ULP for any spread"),
    ("log_softmax", "float64", "exact"): Tol(
        4, 0, np.float64, "contract: <= 4 ULP, including outputs near 0 (log1p)"
    ),
    ("log_softmax", "float32", "exact"): Tol(
        4, 0, np.float32, "contract: <= 4 ULP, including outputs near 0 (log1p)"
    ),
    ("softmax", "float16", "exact"): Tol(1, 0, np.float32, _F16_EXACT),
    ("log_softmax", "float16", "exact"): Tol(1, 0, np.float32, _F16_EXACT),
    ("softmax", "longdouble", "exact"): Tol(4 * 2**11, 0, LD, _LD_WHY),
    ("log_softmax", "longdouble", "exact"): Tol(4 * 2**11, 0, LD, _LD_WHY),
    # --- fast: classical algorithm, x - max rounded once (see derivation) ---
    ("softmax", "float64", "fast"): Tol(4, 2, np.float64, "exact bar + classical spread term"),
    ("softmax", "float32", "fast"): Tol(4, 2, np.float32, "exact bar + classical spread term"),
    ("log_softmax", "float64", "fast"): Tol(4, 2, np.float64, "exact bar + classical spread term"),
    ("log_softmax", "float32", "fast"): Tol(4, 2, np.float32, "exact bar + classical spread term"),
    ("softmax", "float16", "fast"): Tol(1, 2, np.float32, "float32 fast result rounded to float16"),
    ("log_softmax", "float16", "fast"): Tol(
        1, 2, np.float32, "float32 fast result rounded to float16"
    ),
    ("softmax", "longdouble", "fast"): Tol(4 * 2**11, 2, LD, _LD_WHY),
    ("log_softmax", "longdouble", "fast"): Tol(4 * 2**11, 2, LD, _LD_WHY),
    # --- logsumexp: no contract bar beyond "follows scipy"; scipy's own
    # algorithm m + log(s) is accurate except for the cancellation when
    # m ~ -log(s), where the rounding of log(s) (a few ULP of log s) shows.
    # k_ulp covers exp/log/sum; c_spread here multiplies u * |log s|.
    ("logsumexp", "float64", "exact"): Tol(
        4, 4, np.float64, "4 ULP + 4 ULP of log(s) (cancellation in m + log s)"
    ),
    ("logsumexp", "float32", "exact"): Tol(
        4, 4, np.float32, "4 ULP + 4 ULP of log(s) (cancellation in m + log s)"
    ),
    ("logsumexp", "float16", "exact"): Tol(1, 4, np.float32, "float32 result rounded to float16"),
    ("logsumexp", "longdouble", "exact"): Tol(4 * 2**11, 4, LD, _LD_WHY),
}


def tolerance(op: str, dtype, precision: str = "exact") -> Tol:
    name = np.dtype(dtype).name
    if name not in ("float16", "float32", "float64"):
        name = "longdouble" if np.dtype(dtype) == np.dtype(LD) else name
    if op == "logsumexp":
        precision = "exact"
    return TOLERANCES[(op, name, precision)]


# ---------------------------------------------------------------------------
# Reference container
# ---------------------------------------------------------------------------


@dataclass
class Ref:
    hi: np.ndarray  # float64
    lo: np.ndarray  # float64, hi + lo is the reference value
    dist: np.ndarray  # float64, |x_i - max| (0 where undefined); shape of the result
    wdist: np.ndarray  # float64, per row sum_j p_j |x_j - max|, broadcast to the result
    logs: np.ndarray  # float64, log(sum_j exp(x_j - max)) broadcast to the result
    nrow: np.ndarray | float = 1.0  # row length (number of reduced elements)

    def value(self):
        return self.hi  # float64 rounding of the reference (for display / loose checks)


def _pair_from_ld(v):
    v = np.asarray(v, dtype=LD)
    with np.errstate(invalid="ignore", over="ignore"):
        hi = v.astype(np.float64)  # overflows to +-inf beyond float64's range
        lo = (v - hi.astype(LD)).astype(np.float64)
    lo[~np.isfinite(hi)] = 0.0
    return hi, lo


def _rows(x, axis):
    """Move the reduced axis/axes to the end and flatten to (rows, n)."""
    x = np.asarray(x)
    if axis is None:
        axes = tuple(range(x.ndim))
    elif isinstance(axis, tuple):
        axes = tuple(a % x.ndim for a in axis)
    else:
        axes = (axis % x.ndim,)
    keep = [a for a in range(x.ndim) if a not in axes]
    perm = keep + list(axes)
    xt = np.transpose(x, perm)
    kept_shape = tuple(x.shape[a] for a in keep)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    rows = (
        xt.reshape(-1, n)
        if xt.size
        else np.zeros((int(np.prod(kept_shape, dtype=np.int64)), n), x.dtype)
    )
    return rows, perm, kept_shape, axes


def _unrows(r, x_shape, perm, kept_shape, axes, op, keepdims=False):
    """Inverse of _rows for an elementwise result (softmax) or reduced (logsumexp)."""
    if op == "logsumexp":
        out = r.reshape(kept_shape)
        if keepdims:
            full = list(x_shape)
            for a in axes:
                full[a] = 1
            out = out.reshape(full)
        return out
    tshape = tuple(x_shape[p] for p in perm)
    out = r.reshape(tshape)
    return np.transpose(out, np.argsort(perm))


def _classify(rows64):
    """Row masks for the special-value rules."""
    nan_or_pinf = np.any(np.isnan(rows64) | (rows64 == np.inf), axis=1)
    has_nan = np.any(np.isnan(rows64), axis=1)
    all_ninf = np.all(rows64 == -np.inf, axis=1)  # also True for n == 0
    return nan_or_pinf, has_nan, all_ninf


def ld_reference(x, op: str, axis=-1, keepdims=False) -> Ref:
    """Vectorised longdouble reference.  x: float16/32/64 or int values that
    are exactly representable in float64 (they are converted to float64)."""
    x = np.asarray(x)
    x64 = x.astype(np.float64)
    rows, perm, kept_shape, axes = _rows(x64, axis)
    nrows, n = rows.shape
    nan_or_pinf, has_nan, all_ninf = _classify(rows)
    bad = nan_or_pinf | all_ninf
    clean = np.where(bad[:, None], 0.0, rows)
    with np.errstate(all="ignore"):
        if n:
            m = np.max(clean, axis=1)
        else:
            m = np.zeros(nrows)
        X = clean.astype(LD)
        M = m.astype(LD)[:, None]
        dh = X - M
        # TwoSum(X, -M): dh + dl == X - M exactly (both operands are doubles,
        # longdouble has 11 more bits; TwoSum is exact anyway).
        bb = dh - X
        dl = (X - (dh - bb)) + (-M - bb)
        finite = np.isfinite(X)
        dl = np.where(finite, dl, 0)
        e = np.exp(dh) * (1 + dl)
        if n:
            am = np.argmax(clean, axis=1)
            e_rest = e.copy()
            e_rest[np.arange(nrows), am] = 0
            s_rest = np.sum(e_rest, axis=1)
        else:
            s_rest = np.zeros(nrows, dtype=LD)
        logs = np.log1p(s_rest)  # log(sum) with the max term's 1 kept apart
        s = 1 + s_rest
        p = e / s[:, None]
        d64 = np.abs((dh + dl).astype(np.float64))
        d64 = np.where(finite, d64, 0.0)
        wdist = np.sum((p.astype(np.float64)) * d64, axis=1)
        if op == "softmax":
            res = p
        elif op == "log_softmax":
            res = (dh - logs[:, None]) + dl
            res = np.where(finite, res, -np.inf)
        elif op == "logsumexp":
            res = M[:, 0] + logs
        else:
            raise ValueError(op)
        if op == "logsumexp":
            res = np.where(all_ninf, LD(-np.inf), res)
            res = np.where(nan_or_pinf, LD(np.inf), res)
            res = np.where(has_nan, LD(np.nan), res)
            logs_b = logs.astype(np.float64)
            dist = np.zeros(nrows)
            wd = wdist
        else:
            res = np.where(bad[:, None], LD(np.nan), res)
            logs_b = np.broadcast_to(logs.astype(np.float64)[:, None], rows.shape)
            dist = d64
            wd = np.broadcast_to(wdist[:, None], rows.shape)
    hi, lo = _pair_from_ld(res)
    shape = x.shape

    def back(a):
        return np.array(
            _unrows(np.asarray(a), shape, perm, kept_shape, axes, op, keepdims), order="C"
        )

    return Ref(back(hi), back(lo), back(dist), back(wd), back(logs_b), float(n))


def mp_reference(x, op: str, axis=-1, keepdims=False, dps: int = 50, temperature=1) -> Ref:
    """mpmath reference, element by element (exact input values, dps digits), of
    the exact values ``x / temperature`` (a float or an int, itself exact)."""
    if mpmath is None:  # pragma: no cover
        raise RuntimeError("mpmath is required")
    x = np.asarray(x)
    rows, perm, kept_shape, axes = _rows(x, axis)
    nrows, n = rows.shape
    out_n = 1 if op == "logsumexp" else n
    hi = np.zeros((nrows, out_n))
    lo = np.zeros((nrows, out_n))
    dist = np.zeros((nrows, out_n))
    wdist = np.zeros((nrows, out_n))
    logs_a = np.zeros((nrows, out_n))
    with mpmath.workdps(dps):
        for r in range(nrows):
            row = rows[r]
            vals = [_to_mpf(v) / temperature for v in row]
            has_nan = any(mpmath.isnan(v) for v in vals)
            has_pinf = any(v == mpmath.inf for v in vals)
            all_ninf = all(v == -mpmath.inf for v in vals)
            if op == "logsumexp":
                if has_nan:
                    hi[r, 0] = np.nan
                elif has_pinf:
                    hi[r, 0] = np.inf
                elif all_ninf:
                    hi[r, 0] = -np.inf
                else:
                    m = max(v for v in vals if v != -mpmath.inf)
                    ls = _mp_log_sum([v - m for v in vals if v != -mpmath.inf])
                    hi[r, 0], lo[r, 0] = _pair_from_mp(m + ls)
                    logs_a[r, 0] = float(ls)
                continue
            if has_nan or has_pinf or all_ninf:
                hi[r, :] = np.nan
                continue
            m = max(v for v in vals if v != -mpmath.inf)
            ds = [v - m for v in vals]
            es = [mpmath.exp(d) if d != -mpmath.inf else mpmath.mpf(0) for d in ds]
            s = mpmath.fsum(es)
            ls = _mp_log_sum(ds)
            w = mpmath.fsum(e / s * abs(d) for e, d in zip(es, ds) if d != -mpmath.inf)
            for j, (d, e) in enumerate(zip(ds, es)):
                if d == -mpmath.inf:
                    hi[r, j] = 0.0 if op == "softmax" else -np.inf
                    continue
                v = e / s if op == "softmax" else d - ls
                hi[r, j], lo[r, j] = _pair_from_mp(v)
                dist[r, j] = float(abs(d))
            wdist[r, :] = float(w)
            logs_a[r, :] = float(ls)
    shape = x.shape

    def back(a):
        if op == "logsumexp":
            a = a[:, 0]
        return np.array(_unrows(a, shape, perm, kept_shape, axes, op, keepdims), order="C")

    return Ref(back(hi), back(lo), back(dist), back(wdist), back(logs_a), float(n))


def _mp_log_sum(ds):
    """log(sum(exp(d))) for d <= 0 with one d == 0: log1p of the other terms,
    so that a sum of 1 + 1e-300 is not lost at 50 digits."""
    rest = list(ds)
    rest.remove(max(rest))  # one of the maximal terms (exp(0) = 1)
    return mpmath.log1p(mpmath.fsum(mpmath.exp(d) for d in rest if d != -mpmath.inf))


def _to_mpf(v):
    """Exact conversion of one array element to an mpf."""
    if isinstance(v, np.generic) and v.dtype == np.dtype(LD):
        if np.isnan(v):
            return mpmath.mpf("nan")
        if np.isinf(v):
            return mpmath.mpf("inf") if v > 0 else mpmath.mpf("-inf")
        hi = float(v)  # a 64-bit mantissa splits exactly into two doubles
        lo = float(v - LD(hi))
        return mpmath.mpf(hi) + mpmath.mpf(lo)
    if isinstance(v, (np.bool_, bool, np.integer, int)):
        return mpmath.mpf(int(v))
    f = float(v)  # float16/32/64 -> float is exact
    if math.isnan(f):
        return mpmath.mpf("nan")
    return mpmath.mpf(f)


def _pair_from_mp(v):
    h = float(v)  # correctly rounded (mpmath rounds to nearest)
    if not math.isfinite(h) or h == 0.0:
        return h, 0.0
    return h, float(v - mpmath.mpf(h))


class NoReference(Exception):
    """No reference precise enough for this input on this platform."""


def reference(x, op, axis=-1, keepdims=False, mp_max=64) -> Ref:
    """mpmath for small inputs (<= mp_max elements), the longdouble reference
    (validated against mpmath in test_reference.py) for larger ones."""
    x = np.asarray(x)
    if x.size <= mp_max or x.dtype == LD:
        return mp_reference(x, op, axis, keepdims)
    if HAVE_EXTENDED_LD:
        return ld_reference(x, op, axis, keepdims)
    if x.size <= 5000:
        return mp_reference(x, op, axis, keepdims)
    raise NoReference("needs an extended-precision np.longdouble for the reference")


# ---------------------------------------------------------------------------
# ULP measurement and the assertion helper
# ---------------------------------------------------------------------------


def _work_dtype(dtype):
    return LD if np.dtype(dtype) == np.dtype(LD) else np.float64


def ulp_errors(got, ref: Ref):
    """Per-element error in ULPs of got's dtype (finite reference values only;
    NaN elsewhere)."""
    got = np.asarray(got)
    dt = got.dtype.newbyteorder("=")
    W = _work_dtype(dt)
    g = got.astype(W)
    with np.errstate(all="ignore"):
        err = np.abs((g - ref.hi.astype(W)) - ref.lo.astype(W))
        sp = np.spacing(np.abs(ref.hi).astype(dt)).astype(W)
        u = np.asarray(err / sp, dtype=np.float64)
    return np.where(np.isfinite(ref.hi), u, np.nan)


def check_ulp(got, ref: Ref, op: str, precision: str = "exact", k_ulp=None, dtype=None):
    """Return a list of human-readable failures (empty when within tolerance)."""
    got = np.asarray(got)
    dt = np.dtype(dtype) if dtype is not None else got.dtype.newbyteorder("=")
    tol = tolerance(op, dt, precision)
    k = tol.k_ulp if k_ulp is None else k_ulp
    problems = []
    if got.shape != ref.hi.shape:
        return [f"shape {got.shape} != reference shape {ref.hi.shape}"]
    W = _work_dtype(dt)
    g = got.astype(W)
    h = ref.hi
    # 1. special values: identical NaN pattern and identical infinities
    nan_ref = np.isnan(h)
    nan_got = np.isnan(g)
    if np.any(nan_ref != nan_got):
        idx = np.argwhere(nan_ref != nan_got)[:5]
        problems.append(
            f"NaN pattern differs at {idx.tolist()}: got {[g[tuple(i)] for i in idx]}, "
            f"ref {[h[tuple(i)] for i in idx]}"
        )
    inf_ref = np.isinf(h)
    bad_inf = inf_ref & ~(g == h.astype(W))
    if np.any(bad_inf):
        idx = np.argwhere(bad_inf)[:5]
        problems.append(
            f"infinities differ at {idx.tolist()}: got {[g[tuple(i)] for i in idx]}, "
            f"ref {[h[tuple(i)] for i in idx]}"
        )
    # a finite reference beyond the result dtype's range rounds to +-inf:
    # accept +-inf or the largest finite value of the right sign
    with np.errstate(over="ignore", invalid="ignore"):
        h_dt = h.astype(dt)
    beyond = np.isfinite(h) & np.isinf(h_dt)
    if np.any(beyond):
        big = W(np.finfo(dt).max)
        ok = (g == h_dt.astype(W)) | (g == np.sign(h).astype(W) * big)
        if not np.all(ok[beyond]):
            idx = np.argwhere(beyond & ~ok)[:5]
            problems.append(
                f"reference beyond the range of {dt.name} at {idx.tolist()}: "
                f"got {[g[tuple(i)] for i in idx]}, ref {[h[tuple(i)] for i in idx]}"
            )
    fin = np.isfinite(h) & ~beyond
    got_nonfinite = fin & ~np.isfinite(g)
    if np.any(got_nonfinite):
        idx = np.argwhere(got_nonfinite)[:5]
        problems.append(
            f"non-finite results where the reference is finite at {idx.tolist()}: "
            f"got {[g[tuple(i)] for i in idx]}, ref {[h[tuple(i)] for i in idx]}"
        )
    # 2. below the normal range: anything in [0, tiny] with the right sign
    tiny = np.finfo(dt).tiny
    sub = fin & (np.abs(h) < tiny)
    with np.errstate(all="ignore"):
        sub_ok = (np.abs(g) <= W(tiny)) & ((g == 0) | (h == 0) | (np.sign(g) == np.sign(h)))
    bad_sub = sub & ~sub_ok
    if np.any(bad_sub):
        idx = np.argwhere(bad_sub)[:5]
        problems.append(
            f"reference below the normal range, result outside [0, tiny] at {idx.tolist()}: "
            f"got {[g[tuple(i)] for i in idx]}, ref {[h[tuple(i)] for i in idx]}"
        )
    # 3. normal range: k ULP (+ the precision="fast" spread term)
    norm = fin & ~sub & np.isfinite(g)
    if np.any(norm):
        with np.errstate(all="ignore"):
            err = np.abs((g - h.astype(W)) - ref.lo.astype(W)).astype(np.float64)
            sp = np.spacing(np.abs(h).astype(dt)).astype(np.float64)
            u = float(np.finfo(tol.compute).eps) / 2
            if tol.c_spread == 0:
                extra = 0.0
            elif op == "softmax":
                extra = (tol.c_spread * u * (ref.dist + ref.wdist) + ref.nrow * U64) * np.abs(h)
            elif op == "log_softmax":
                extra = (
                    tol.c_spread * u * (ref.dist + ref.wdist + 1 + np.abs(ref.logs))
                    + ref.nrow * U64
                )
            else:  # logsumexp: cancellation in m + log(s)
                extra = tol.c_spread * u * np.abs(ref.logs)
            allowed = k * sp + extra
            over = norm & ~(err <= allowed)
        if np.any(over):
            ulps = np.where(norm, err / sp, 0)
            worst = np.unravel_index(np.argmax(np.where(over, ulps, -1)), ulps.shape)
            problems.append(
                f"{int(over.sum())} of {int(norm.sum())} elements over tolerance "
                f"({op}, {dt.name}, {precision}: {k} ULP + spread term); worst at {worst}: "
                f"got {g[worst]!r}, ref {h[worst]!r}{ref.lo[worst]:+.3e}, "
                f"error {ulps[worst]:.1f} ULP, allowed {allowed[worst] / sp[worst]:.1f} ULP"
            )
    return problems


def assert_ulp(got, ref: Ref, op: str, precision: str = "exact", k_ulp=None, dtype=None, msg=""):
    """Assert got matches the reference within the tolerance table (see TOLERANCES)."""
    problems = check_ulp(got, ref, op, precision, k_ulp=k_ulp, dtype=dtype)
    if problems:
        raise AssertionError((msg + ": " if msg else "") + "; ".join(problems))


def max_ulp(got, ref: Ref):
    """Largest ULP error over the finite, normal-range reference values."""
    got = np.asarray(got)
    dt = got.dtype.newbyteorder("=")
    u = ulp_errors(got, ref)
    mask = np.isfinite(ref.hi) & (np.abs(ref.hi) >= np.finfo(dt).tiny)
    return float(np.max(u[mask])) if np.any(mask) else 0.0


# ---------------------------------------------------------------------------
# Issue 5 (DESIGN.md section 3): where=, the vector-Jacobian products, the Jacobian
# ---------------------------------------------------------------------------
#
# where= and temperature= use the table above unchanged: a masked row is the
# softmax of its included entries, a tempered row the softmax of x / T.
#
# The gradients have no contract bar; these are the bounds of a stable
# formula. softmax_backward s * (g - d), d = sum_j g_j s_j: the subtraction
# g - d cancels, so beside k ULP of the result the error may reach
# c * u * cond with cond = |s_i| (|g_i| + sum_j |g_j s_j|) -- the rounding of
# d to the result dtype (u: unit roundoff of the result dtype), the condition
# of the problem -- plus n * u64 * cond for a recursive float64 sum.
# log_softmax_backward g - p G, p = exp(s), G = sum_j g_j:
# cond = |g_i| + p_i sum_j |g_j| (the exp of s and the sum, same terms).

TOLERANCES.update(
    {
        ("softmax_backward", "float64", "exact"): Tol(
            4,
            2,
            np.float64,
            "2 roundings of s * (g - d) + exp/sum; cancellation in g - d: 2u * cond",
        ),
        ("softmax_backward", "float32", "exact"): Tol(
            2,
            2,
            np.float32,
            "computed in float64 or float32 with a float64 sum: 2 ULP + 2u32 * cond",
        ),
        ("softmax_backward", "float16", "exact"): Tol(
            1, 2, np.float16, "computed in float32, rounded once to float16"
        ),
        ("log_softmax_backward", "float64", "exact"): Tol(
            4, 2, np.float64, "exp(s) within 1 ULP, the product and the difference; 2u * cond"
        ),
        ("log_softmax_backward", "float32", "exact"): Tol(
            2,
            2,
            np.float32,
            "computed in float64 or float32 with a float64 sum: 2 ULP + 2u32 * cond",
        ),
        ("log_softmax_backward", "float16", "exact"): Tol(
            1, 2, np.float16, "computed in float32, rounded once to float16"
        ),
        # J = diag(y) - y y^T from the library's own y (each y within 4 ULP): an
        # off-diagonal -y_i y_j is within 4 + 4 ULP + its rounding; the diagonal
        # y_i * sum_{j != i} y_j likewise (a sum of positive terms keeps the
        # relative error of its terms) plus n * u64 for that sum (c_spread * n * u64).
        ("softmax_jacobian", "float64", "exact"): Tol(
            9, 1, np.float64, "two 4-ULP outputs multiplied"
        ),
        ("softmax_jacobian", "float32", "exact"): Tol(
            9, 1, np.float32, "two 4-ULP outputs multiplied"
        ),
    }
)


def masked_reference(x, where, op, axis=-1, keepdims=False, temperature=1) -> Ref:
    """mp_reference of each row's included entries; excluded entries and rows
    with none give 0 (softmax) / -inf (log_softmax, logsumexp)."""
    x = np.asarray(x)
    where = np.broadcast_to(np.asarray(where, dtype=bool), x.shape)
    rows, perm, kept_shape, axes = _rows(x, axis)
    keep_rows = _rows(where, axis)[0]
    nrows, n = rows.shape
    out_n = 1 if op == "logsumexp" else n
    fill = 0.0 if op == "softmax" else -np.inf
    names = ("hi", "lo", "dist", "wdist", "logs")
    fields = {name: np.zeros((nrows, out_n)) for name in names}
    fields["hi"][:] = fill
    for r in range(nrows):
        keep = keep_rows[r]
        if not keep.any():
            continue
        ref = mp_reference(rows[r][keep], op, axis=-1, temperature=temperature)
        columns = slice(None) if op == "logsumexp" else keep
        for name in names:
            fields[name][r, columns] = np.ravel(getattr(ref, name))

    def back(a):
        if op == "logsumexp":
            a = a[:, 0]
        return np.array(_unrows(a, x.shape, perm, kept_shape, axes, op, keepdims), order="C")

    return Ref(*(back(fields[name]) for name in names), float(n))


def mp_backward_reference(grad, y, op, axis=-1, where=None):
    """The exact vector-Jacobian product of the given (float) `grad` and `y`.

    Returns ``(hi, lo, cond)``: the exact value as a float64 pair and the
    condition term of the tolerance table (see above). `where` excludes
    entries: 0 there, left out of the sums.
    """
    grad, y = np.asarray(grad), np.asarray(y)
    where = np.ones(y.shape, bool) if where is None else np.broadcast_to(where, y.shape)
    g_rows, perm, kept_shape, axes = _rows(grad, axis)
    y_rows = _rows(y, axis)[0]
    w_rows = _rows(where, axis)[0]
    hi, lo, cond = (np.zeros(y_rows.shape) for _ in range(3))
    with mpmath.workdps(50):
        for r in range(y_rows.shape[0]):
            keep = [bool(v) for v in w_rows[r]]
            g = [_to_mpf(v) if k else mpmath.mpf(0) for v, k in zip(g_rows[r], keep)]
            s = [_to_mpf(v) if k else mpmath.mpf(0) for v, k in zip(y_rows[r], keep)]
            if op == "softmax_backward":
                dot = mpmath.fsum(a * b for a, b in zip(g, s))
                scale = mpmath.fsum(abs(a * b) for a, b in zip(g, s))
                values = [b * (a - dot) for a, b in zip(g, s)]
                conds = [abs(b) * (abs(a) + scale) for a, b in zip(g, s)]
            else:
                p = [mpmath.exp(b) if k else mpmath.mpf(0) for b, k in zip(s, keep)]
                total = mpmath.fsum(g)
                scale = mpmath.fsum(abs(a) for a in g)
                values = [a - q * total for a, q in zip(g, p)]
                conds = [abs(a) + q * scale for a, q in zip(g, p)]
            for j, (value, c) in enumerate(zip(values, conds)):
                hi[r, j], lo[r, j] = _pair_from_mp(value) if keep[j] else (0.0, 0.0)
                cond[r, j] = float(c)

    def back(a):
        return np.array(_unrows(a, y.shape, perm, kept_shape, axes, "softmax"), order="C")

    return back(hi), back(lo), back(cond)


def assert_close_to(got, hi, lo, cond, op, n, dtype=None, msg=""):
    """got within the table's k ULP of hi + lo plus (c u + n u64) * cond."""
    got = np.asarray(got)
    dt = np.dtype(dtype) if dtype is not None else got.dtype.newbyteorder("=")
    tol = tolerance_of(op, dt)
    with np.errstate(all="ignore"):
        err = np.abs((got.astype(np.float64) - hi) - lo)
        spacing = np.spacing(np.abs(hi).astype(dt)).astype(np.float64)
        spacing = np.maximum(spacing, np.finfo(dt).smallest_subnormal)
        u = float(np.finfo(tol.compute).eps) / 2
        allowed = tol.k_ulp * spacing + (tol.c_spread * u + n * U64) * cond
    finite = np.isfinite(hi)
    problems = []
    if not np.array_equal(np.isnan(got), ~finite & np.isnan(hi)):
        problems.append("NaN pattern differs")
    over = finite & ~(err <= allowed)
    if over.any():
        worst = np.unravel_index(np.argmax(np.where(over, err / allowed, -1)), err.shape)
        problems.append(
            f"{int(over.sum())} of {int(finite.sum())} over tolerance ({op}, {dt.name}); "
            f"worst at {worst}: got {got[worst]!r}, ref {hi[worst]!r}, "
            f"{err[worst] / spacing[worst]:.1f} ULP, allowed "
            f"{allowed[worst] / spacing[worst]:.1f}"
        )
    if problems:
        raise AssertionError((msg + ": " if msg else "") + "; ".join(problems))


def tolerance_of(op, dtype):
    """The table's entry for an issue-5 operation (any precision reads "exact")."""
    return TOLERANCES[(op, np.dtype(dtype).name, "exact")]
