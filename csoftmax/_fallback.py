"""Pure-NumPy implementation of the whole csoftmax contract.

It is the backend when the C extension is missing, the computation for
dtypes the kernels do not take (longdouble), and the tests' oracle.

Exact mode keeps every result within a few ULP whatever the spread of the
logits:

* float32 rows are computed in float64, where ``x - max`` is exact for all
  practical purposes and one final rounding gives the float32 result.
* float64 and longdouble rows split ``x - max`` into ``hi + lo`` exactly
  (Fast2Sum) and use ``exp(hi + lo) = e + e*lo`` with ``e = exp(hi)``. Their
  sums are kept as a value plus its rounding error: summed in longdouble
  where it is wider (rows), else by a TwoSum tree (columns, MSVC, Apple).
* The sum of the non-maximal terms ``T`` is summed directly, never as
  ``S - 1``, so that ``log1p(T)`` keeps log_softmax accurate near 0.

``precision="fast"`` is the classical algorithm in the compute dtype
(``x - max`` rounded once), with the same special values and layouts.
"""

import math
import operator
import os

import numpy as np

from . import _api
from . import dask as _dask  # imports dask only when handed a dask array

_FLOAT64 = np.dtype(np.float64)

# Where longdouble has more precision than float64 (x86 extended, quad), a
# float64 row sums accurately with np.sum in longdouble. Tests flip this to
# cover the TwoSum tree that the other platforms use.
LONGDOUBLE_IS_WIDER = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def _default_num_threads():
    try:
        count = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        count = 0
    return count if count >= 1 else os.cpu_count() or 1


# NumPy runs on one thread here; the value is kept so that the API matches.
_num_threads = _default_num_threads()


def get_num_threads():
    """The thread count csoftmax would use (OMP_NUM_THREADS or the CPU count)."""
    return _num_threads


def set_num_threads(n):
    """Set the thread count (an int >= 1)."""
    global _num_threads
    if isinstance(n, (bool, np.bool_)):
        raise TypeError("the number of threads must be an integer, not bool")
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, not {n}")
    _num_threads = n


def softmax(x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None, precision="exact"):
    """scipy.special.softmax, accurate to a few ULP; see DESIGN.md §1 and §3."""
    return _run(
        "softmax", x, axis, out, precision, where=where, temperature=temperature, dtype=dtype
    )


def log_softmax(
    x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None, precision="exact"
):
    """scipy.special.log_softmax, accurate to a few ULP; see DESIGN.md §1 and §3."""
    return _run(
        "log_softmax", x, axis, out, precision, where=where, temperature=temperature, dtype=dtype
    )


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, where=None):
    """scipy.special.logsumexp, accurate to a few ULP; see DESIGN.md §1 and §3."""
    if _dask.is_dask_array(a):
        return _dask.logsumexp(a, axis, b, keepdims, return_sign, where=where)
    if b is None and not return_sign:
        return _run("logsumexp", a, axis, None, "exact", keepdims, where=where)
    return _signed_logsumexp(a, axis, b, keepdims, return_sign, where)


def softmax_backward(grad, y, axis=None, *, out=None, where=None):
    """The vector-Jacobian product of softmax: ``y * (grad - sum(grad * y))``."""
    return _run_backward("softmax_backward", grad, y, axis, out, where)


def log_softmax_backward(grad, y, axis=None, *, out=None, where=None):
    """The vector-Jacobian product of log_softmax: ``grad - exp(y) * sum(grad)``."""
    return _run_backward("log_softmax_backward", grad, y, axis, out, where)


def _signed_logsumexp(a, axis, b, keepdims, return_sign, where):
    """log|sum(b * exp(a))| and its sign, with scipy.special.logsumexp's rules.

    Entries excluded by `where` drop out as if their weight were 0.
    """
    a, where = _api.split_mask(a, where)
    a, b, dtype = _weighted_operands(a, b)
    shape = np.broadcast_shapes(a.shape, b.shape) or (1,)  # 0-d reads as (1,)
    if dtype.kind == "c":
        _api.refuse_complex_options(where)
        axes = _api.normalize_axes(axis, len(shape))
        special = _api.scipy_special()
        with np.errstate(all="ignore"):
            return special.logsumexp(a, axis=axes, b=b, keepdims=keepdims, return_sign=return_sign)
    p = _api.plan(
        "logsumexp",
        np.broadcast_to(a.astype(dtype, copy=False), shape),
        axis,
        None,
        "exact",
        keepdims,
        where=where,
    )
    if p.route == "done":  # nothing to sum: -inf, whose sign scipy gives as -1
        result = p.finish()
        return (result, np.sign(result)) if return_sign else result

    x3, b3 = p.x3, p.arrange(np.broadcast_to(b, shape))
    if p.w3 is not None:  # excluded: a zero weight on -inf, whatever they held
        x3 = np.where(p.w3, x3, -np.inf)
        b3 = np.where(p.w3, b3, 0)
    widen = x3.dtype.itemsize <= 4  # float32 is computed in float64
    with np.errstate(all="ignore"):
        work = x3.astype(np.float64) if widen else x3
        weights = b3.astype(np.float64) if widen else b3
        # A zero weight drops its term, even an infinite or NaN one.
        work = np.where(weights == 0, -np.inf, work)
        maximum = work.max(axis=1, keepdims=True)
        hi, lo = _shift(work, maximum, correct=not widen)
        is_max = hi == 0
        terms = weights * np.exp(hi)
        tie_weight, tie_error = _sum_where(weights, is_max, accurate=not widen)
        rest, rest_error = _sum_where(terms, ~is_max, accurate=not widen)
        if not widen:
            tie_weight += tie_error
            rest += rest_error + (terms * lo).sum(axis=1, keepdims=True)
        # log|tie_weight + rest|, through log1p where that keeps more digits
        # (not when the tie weights cancel: ratio is then inf or NaN).
        ratio = rest / tie_weight
        total = tie_weight + rest
        use_log1p = (ratio > -0.5) & (ratio < np.inf)
        log_abs = np.where(
            use_log1p, np.log(np.abs(tie_weight)) + np.log1p(ratio), np.log(np.abs(total))
        )
        result = log_abs + maximum
        sign = np.sign(total)
        unfinished = ~np.isfinite(result)
        if unfinished.any():
            # scipy gives every row its scaled formula cannot finish (NaN, inf,
            # only excluded terms, a zero sum) the unscaled one.
            plain = np.sum(b3 * np.exp(x3), axis=1, keepdims=True)
            result = np.where(unfinished, np.log(np.abs(plain)), result)
            sign = np.where(unfinished, np.sign(plain), sign)
        if not return_sign:
            result[sign < 0] = np.nan
    result = p.result_from(result[:, 0])
    return (result, p.result_from(sign[:, 0])) if return_sign else result


def _weighted_operands(a, b):
    """`a` and `b` (ones if None) as arrays, and the dtype scipy computes in.

    As in scipy, Python scalars do not widen the dtype: float32 `a` with
    ``b=2`` stays float32; integers and booleans become float64.
    """
    operands, arrays = [], []
    for value in (a, b):
        if value is None:
            continue
        array = _api.as_array(value)
        _api.dtypes(array.dtype)  # TypeError for unsupported dtypes
        weak = isinstance(value, (bool, int, float, complex)) and not isinstance(value, np.generic)
        operands.append(value if weak else array)
        arrays.append(array)
    dtype = np.result_type(*operands)
    if dtype.kind not in "fc":
        dtype = _FLOAT64
    if b is None:
        arrays.append(np.ones((), dtype))
    return arrays[0], arrays[1], dtype


def _run(op, x, axis, out, precision, keepdims=False, **options):
    if _dask.is_dask_array(x):  # lazily, on the dask graph (csoftmax.dask)
        return getattr(_dask, op)(x, axis, out=out, precision=precision, **options)
    p = _api.plan(op, x, axis, out, precision, keepdims, **options)
    if p.route != "done":
        compute3(op, p.x3, p.y3, p.precision, p.w3, p.temperature)
    return p.finish()


def _run_backward(op, grad, y, axis, out, where):
    p = _api.plan_backward(op, grad, y, axis, out, where)
    if p.route != "done":
        backward3(op, p.g3, p.x3, p.y3, p.w3)
    return p.finish()


def compute3(op, x3, y3, precision, w3=None, temperature=1.0):
    """Fill `y3` with `op` of ``x3 / temperature`` reduced along axis 1.

    `x3` is ``(outer, n, inner)`` with n >= 1; `y3` has its shape, or
    ``(outer, inner)`` for logsumexp, and the same dtype; `y3` may be `x3`.
    `w3` (None or bools of `x3`'s shape) selects the entries that take part:
    the others give 0 / -inf whatever they hold, and a row without any gives
    0 / -inf instead of the NaN of a row of only -inf.
    """
    with np.errstate(all="ignore"):
        if w3 is not None:
            x3 = np.where(w3, x3, -np.inf)
        _compute(op, x3, y3, precision, temperature)
    if w3 is not None and op != "logsumexp":  # logsumexp's empty rows are already -inf
        np.copyto(y3, 0 if op == "softmax" else -np.inf, where=~w3)


def _compute(op, x3, y3, precision, temperature):
    exact = precision == "exact"
    widen = exact and x3.dtype.itemsize <= 4  # float32 is computed in float64
    work = x3.astype(np.float64) if widen else x3
    maximum = work.max(axis=1, keepdims=True)
    hi, lo = _shift(work, maximum, correct=exact and not widen)
    is_max = hi == 0
    if temperature != 1.0:
        hi, lo = _divide(hi, lo, temperature, work, maximum)
    e = np.exp(hi)
    if exact:
        ties = np.count_nonzero(is_max, axis=1, keepdims=True)
        rest, rest_error = _sum_where(e, ~is_max, accurate=lo is not None)
        if lo is not None:  # exp(hi + lo) = e + e*lo, and lo is 0 at the maximum
            rest_error += (e * lo).sum(axis=1, keepdims=True)
        # softmax divides by S = ties + rest; the logs take log1p(T) with
        # T = S - 1 summed directly, which keeps log_softmax exact near 0.
        total, total_error = _add(ties if op == "softmax" else ties - 1, rest, rest_error)
    else:  # the classical algorithm, though float32 still sums in float64
        total = e.sum(axis=1, keepdims=True, dtype=np.result_type(e.dtype, np.float64))
        total_error = None
    if op == "softmax":
        if total_error is None:
            np.divide(e, total, out=y3, casting="same_kind")
            return
        # e*(1 + lo) / (total + total_error) as q + q*(lo - total_error/total)
        # with q = e / total: one rounded division plus a small correction.
        e /= total
        correction = lo - total_error / total
        correction *= e
        np.add(e, correction, out=y3)
        return
    if not exact:
        log_total = np.log(total)
    else:
        log_total = np.log1p(total)
        if total_error is not None:
            log_total += total_error / (1 + total)
    if op == "log_softmax":
        if lo is None:
            np.subtract(hi, log_total, out=y3, casting="same_kind")
        else:
            lo -= log_total
            np.add(hi, lo, out=y3)
        return
    # logsumexp: rows of -inf give -inf, with +inf +inf, with NaN NaN.
    result = np.where(np.isfinite(maximum), maximum + log_total, maximum)
    np.copyto(y3, result[:, 0], casting="same_kind")


def backward3(op, g3, s3, y3, w3=None):
    """Fill `y3` with the vector-Jacobian product of `op` along axis 1.

    `g3` is the gradient and `s3` the forward output (softmax or log_softmax),
    both ``(outer, n, inner)``; `y3` (same shape and dtype) may be either.
    Entries that `w3` excludes give 0 and are left out of the sums.
    """
    widen = g3.dtype.itemsize <= 4  # float32 is computed in float64
    with np.errstate(all="ignore"):
        grad = g3.astype(np.float64) if widen else g3
        output = s3.astype(np.float64) if widen else s3
        if w3 is not None:
            grad = np.where(w3, grad, 0)
        if op == "softmax_backward":
            if w3 is not None:
                output = np.where(w3, output, 0)
            dot = _row_sum(grad * output, accurate=not widen)
            result = (grad - dot) * output
        else:
            probabilities = np.exp(output)
            result = grad - probabilities * _row_sum(grad, accurate=not widen)
        np.copyto(y3, result, casting="same_kind")
    if w3 is not None:
        np.copyto(y3, 0, where=~w3)


def _row_sum(terms, accurate):
    """Sum along axis 1 (kept), to far below an ULP when `accurate`."""
    if not accurate:
        return terms.sum(axis=1, keepdims=True)
    total, error = _accurate_sum(terms)
    return total + error


def _shift(work, maximum, correct):
    """``work - maximum`` along axis 1 as ``(hi, lo)``.

    Rows whose maximum is not finite (NaN, +inf, or only -inf) become NaN
    rows. With `correct`, `lo` is the exact rounding error of `hi`, else None.
    """
    shift = np.where(np.isfinite(maximum), maximum, np.nan)
    hi = work - shift
    if not correct:
        return hi, None
    # Fast2Sum of work + (-shift): work <= shift, so min(work, -shift) is
    # the operand of larger magnitude and the error term below is exact.
    negated = -shift
    big = np.minimum(work, negated)
    small = np.maximum(work, negated)
    np.subtract(hi, big, out=big)
    lo = np.subtract(small, big, out=small)
    # exp(hi) is 0 where x is -inf or x - max overflowed: lo must not be NaN.
    lo[hi == -np.inf] = 0
    return hi, lo


def _divide(hi, lo, temperature, work, maximum):
    """``(hi + lo) / temperature`` as a new pair; `lo` None: one rounded division.

    ``q = hi / T`` rounded, plus the exact remainder ``hi - q*T`` (Dekker's
    product on mantissas scaled to [0.5, 1), so no split overflows) and `lo`,
    both divided by T: the pair keeps x / T exact far below an ULP.
    """
    quotient = hi / temperature
    if lo is None:
        return quotient, None
    mantissa, exponent = np.frexp(quotient)
    t_mantissa, t_exponent = math.frexp(temperature)
    product, product_error = _two_product(mantissa, work.dtype.type(t_mantissa))
    scaled_hi = np.ldexp(hi, -(exponent + t_exponent))  # about `product`: exact
    remainder = (scaled_hi - product) - product_error
    lo = np.ldexp(remainder / t_mantissa, exponent) + lo / temperature
    # An overflowed x - max (a spread beyond the float range) may be finite
    # once divided; far from 0, x/T - max/T is accurate enough there.
    overflowed = (hi == -np.inf) & np.isfinite(work)
    if overflowed.any():
        quotient = np.where(overflowed, work / temperature - maximum / temperature, quotient)
    lo[~(np.isfinite(quotient) & np.isfinite(hi))] = 0
    return quotient, lo


def _two_product(a, b):
    """``a * b`` and its exact rounding error (Dekker, Veltkamp's split); |a|, |b| <= 1."""
    product = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    error = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return product, error


def _split(a):
    """Veltkamp's split of `a` into two halves of its mantissa, ``a = hi + lo``."""
    bits = np.finfo(a.dtype).nmant + 1
    factor = a.dtype.type(2) ** ((bits + 1) // 2) + 1
    scaled = factor * a
    hi = scaled - (scaled - a)
    return hi, a - hi


def _sum_where(terms, where, accurate):
    """Sum along axis 1 (kept) of `terms` where `where` is True, as ``(sum, error)``.

    The error is None unless `accurate`; float32 widened to float64 does not
    need it.
    """
    terms = np.where(where, terms, 0)
    if not accurate:
        return terms.sum(axis=1, keepdims=True), None
    return _accurate_sum(terms)


def _add(a, b, b_error):
    """``a + (b + b_error)`` as ``(sum, error)``, exactly when `b_error` is not None."""
    total = a + b
    if b_error is None:
        return total, None
    return total, _two_sum_error(a, b, total) + b_error


def _accurate_sum(terms):
    """Sum along axis 1 (kept) as ``(sum, error)`` good to far below an ULP."""
    if LONGDOUBLE_IS_WIDER and terms.dtype == np.float64 and terms.shape[2] == 1:
        # Pairwise in 64-bit mantissas, then split into two float64s.
        wide = terms.sum(axis=1, keepdims=True, dtype=np.longdouble)
        summed = wide.astype(np.float64)
        return summed, (wide - summed).astype(np.float64)
    summed, errors = _two_sum_tree(terms)
    total = summed + errors
    return total, errors - (total - summed)  # Fast2Sum: |errors| << |summed|


def _two_sum_tree(terms):
    """Pairwise sum along axis 1 and the sum of its rounding errors.

    Each level adds the first half of the row to the second half with TwoSum,
    so every partial sum is exact once its error is counted; the errors are
    orders of magnitude smaller and are summed plainly.
    """
    errors = np.zeros_like(terms[:, :1])
    while terms.shape[1] > 1:
        half = terms.shape[1] // 2
        first, second = terms[:, :half], terms[:, half : 2 * half]
        sums = first + second
        errors += _two_sum_error(first, second, sums).sum(axis=1, keepdims=True)
        if terms.shape[1] % 2:  # fold the odd term into the first sum
            head, odd = sums[:, :1], terms[:, -1:]
            folded = head + odd
            errors += _two_sum_error(head, odd, folded)
            head[...] = folded
        terms = sums
    return terms, errors


def _two_sum_error(a, b, total):
    """The exact rounding error of ``total = a + b`` (Knuth's TwoSum)."""
    b_virtual = total - a
    return (a - (total - b_virtual)) + (b - b_virtual)


# The NumPy implementations of the fused losses and the segment functions have
# modules of their own (which import this one, hence at the end).
from ._cross_entropy import cross_entropy  # noqa: E402, F401 (re-exported)
from ._segments import segment_log_softmax, segment_logsumexp, segment_softmax  # noqa: E402, F401
