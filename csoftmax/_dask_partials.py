"""The NumPy twin of the C "partials across parts" steps (src_c/partials.c).

csoftmax.dask reduces an axis cut into chunks in three steps -- per-chunk
slice partials, their exact combine in chunk order, a per-chunk output pass
from the combined scales -- and runs this module's functions when the C
extension is absent.  Same arguments, record layouts and rules as
``csoftmax._native.chunk_partials`` etc. (csoftmax.h, "Partials across
parts"); tests/test_dask.py checks the two against each other.

Numerics follow the C code: partials as in ``_fallback`` (float32 widened to
float64, float64 with ``x - max`` carried exactly and compensated sums), and
the combine of row_scale.c in double-double arithmetic, vectorised over
slices with the parts added in their order.
"""

import numpy as np

from csoftmax import _fallback

PARTIAL_DOUBLES = 4  # max, count, rest_hi, rest_lo
SCALE_DOUBLES = 5  # state, max, inverse_hi, inverse_lo, log_sum
FINITE, NAN, POS_INF, NEG_INF = 0, 1, 2, 3  # csm_row_state


def chunk_partials(x3, precision, w3=None, temperature=1.0):
    """The (outer, inner, 4) float64 partial records of x3's slices (of
    ``x3 / temperature`` over the entries where `w3`, bools like x3, is True)."""
    outer, n, inner = x3.shape
    partials = np.empty((outer, inner, PARTIAL_DOUBLES))
    if n == 0:
        partials[...] = (-np.inf, 0.0, 0.0, 0.0)
        return partials
    exact = precision == "exact"
    widen = exact and x3.dtype.itemsize <= 4
    with np.errstate(all="ignore"):
        if w3 is not None:
            x3 = np.where(w3, x3, -np.inf)  # excluded entries are out of every max and sum
        work = x3.astype(np.float64) if widen else x3
        maximum = work.max(axis=1, keepdims=True)  # NaN when the slice holds one
        hi, lo = _fallback._shift(work, maximum, correct=exact and not widen)
        is_max = work == maximum
        if temperature != 1.0:
            hi, lo = _fallback._divide(hi, lo, temperature, work, maximum)
        e = np.exp(hi)
        others = np.where(is_max, 0, e).astype(np.float64, copy=False)
        if exact and not widen:
            rest, error = _fallback._accurate_sum(others)
            error = error + (e * lo).sum(axis=1, keepdims=True)  # lo is 0 at the maxima
            total = rest + error
            rest_lo = error - (total - rest)  # Fast2Sum: |error| << |rest|
            rest_hi = total
        else:  # float64 sums of float32-sized terms: the error is far below their ULP
            rest_hi = others.sum(axis=1, keepdims=True)
            rest_lo = np.zeros_like(rest_hi)
        count = np.count_nonzero(is_max, axis=1, keepdims=True).astype(np.float64)
        finite = np.isfinite(maximum)
        rest_hi = np.where(finite, rest_hi, np.where(np.isnan(maximum), np.nan, 0.0))
        rest_lo = np.where(finite, rest_lo, 0.0)
    partials[..., 0] = maximum[:, 0]
    partials[..., 1] = count[:, 0]
    partials[..., 2] = rest_hi[:, 0]
    partials[..., 3] = rest_lo[:, 0]
    return partials


# --- double-double arithmetic, as in row_scale.c (elementwise on arrays) ---


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_product(a, b):
    split = 134217729.0  # 2^27 + 1: Dekker/Veltkamp, as row_scale.c
    ca, cb = split * a, split * b
    a_hi = ca - (ca - a)
    a_lo = a - a_hi
    b_hi = cb - (cb - b)
    b_lo = b - b_hi
    p = a * b
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _dd_add(a, b):
    hi, lo = _two_sum(a[0], b[0])
    return _two_sum(hi, lo + (a[1] + b[1]))


def _dd_mul(a, b):
    hi, lo = _two_product(a[0], b[0])
    return _two_sum(hi, lo + (a[0] * b[1] + a[1] * b[0]))


def _scaled_difference(block_max, row_max, temperature):
    """(block_max - row_max) / temperature as a double-double, as row_scale.c."""
    difference = _two_sum(block_max, -row_max)
    if temperature == 1.0:
        return difference
    inverse = 1.0 / temperature
    product, error = _two_product(np.float64(inverse), np.float64(temperature))
    inverse = (inverse, ((1.0 - product) - error) / temperature)  # 1 - p is exact (Sterbenz)
    hi, lo = _dd_mul(difference, inverse)
    far = difference[0] * inverse[0] < -(2.0**20)  # exp gives 0 there, as row_scale.c
    return np.where(far, -np.inf, hi), np.where(far, 0.0, lo)


def _exp_double_double(hi, lo):
    if _fallback.LONGDOUBLE_IS_WIDER:
        e = np.exp(hi.astype(np.longdouble) + lo.astype(np.longdouble))
        e_hi = e.astype(np.float64)
        return e_hi, (e - e_hi).astype(np.float64)
    e = np.exp(hi)
    return e, e * lo


def combine_partials(operation_name, partials, temperature=1.0):
    """Scale records (slices, 5) from the C-contiguous (parts, slices, 4) partial records."""
    parts, slices = partials.shape[:2]
    scales = np.zeros((slices, SCALE_DOUBLES))
    with np.errstate(all="ignore"):
        maxima, counts = partials[..., 0], partials[..., 1]
        has_nan = (np.isnan(partials[..., 2]) | np.isnan(maxima)).any(axis=0)
        row_max = np.full(slices, -np.inf) if parts == 0 else maxima.max(axis=0)
        state = np.where(
            has_nan,
            NAN,
            np.where(row_max == np.inf, POS_INF, np.where(row_max == -np.inf, NEG_INF, FINITE)),
        )
        finite = state == FINITE
        row_max = np.where(finite, row_max, np.where(has_nan, np.nan, row_max))
        # rest = sum(exp(x - M)) - 1: the maxima's exact count first, then every part in order
        ones = -1.0 + np.where(maxima == row_max, counts, 0.0).sum(axis=0)
        rest = (ones, np.zeros(slices))
        for part in partials:
            block_rest = (part[:, 2], part[:, 3])
            at_max = part[:, 0] == row_max
            other = ~at_max & (part[:, 0] != -np.inf) & finite
            block_sum = _dd_add(block_rest, (part[:, 1], 0.0))
            factor = _exp_double_double(*_scaled_difference(part[:, 0], row_max, temperature))
            scaled = _dd_mul(block_sum, factor)
            term_hi = np.where(at_max, block_rest[0], np.where(other, scaled[0], 0.0))
            term_lo = np.where(at_max, block_rest[1], np.where(other, scaled[1], 0.0))
            rest = _dd_add(rest, (term_hi, term_lo))
        if operation_name == "softmax":
            total = _dd_add((1.0, 0.0), rest)
            inverse = 1.0 / total[0]
            product = _two_product(inverse, total[0])
            residual = ((1.0 - product[0]) - product[1]) - inverse * total[1]
            scales[:, 2] = np.where(finite, inverse, 0.0)
            scales[:, 3] = np.where(finite, residual * inverse, 0.0)
        else:
            scales[:, 4] = np.where(finite, np.log1p(rest[0] + rest[1]), 0.0)
    scales[:, 0] = state
    scales[:, 1] = row_max
    return scales


def chunk_normalize(operation_name, x3, scales, precision, w3=None, temperature=1.0):
    """softmax / log_softmax of ``x3 / temperature`` (a new array) from its slices'
    (outer * inner, 5) scale records; 0 / -inf where `w3` is False."""
    outer, n, inner = x3.shape
    if x3.size == 0:
        return np.empty(x3.shape, x3.dtype)
    if w3 is not None:
        with np.errstate(invalid="ignore"):
            y = chunk_normalize(
                operation_name,
                np.where(w3, x3, -np.inf),
                scales,
                precision,
                temperature=temperature,
            )
        np.copyto(y, 0 if operation_name == "softmax" else -np.inf, where=~w3)
        return y
    records = scales.reshape(outer, 1, inner, SCALE_DOUBLES)
    state, row_max = records[..., 0], records[..., 1]
    exact = precision == "exact"
    widen = x3.dtype.itemsize <= 4
    with np.errstate(all="ignore"):
        work = x3.astype(np.float64) if widen else x3
        shift = np.where(state == FINITE, row_max, np.nan)  # a non-finite slice becomes NaN
        if not exact and widen:
            # the classical algorithm: x - max rounded once to float32
            hi, lo = (x3 - shift.astype(x3.dtype)).astype(np.float64), None
        else:
            hi, lo = _fallback._shift(work, shift, correct=exact and not widen)
        if temperature != 1.0:
            hi, lo = _fallback._divide(hi, lo, temperature, work, shift)
        if operation_name == "softmax":
            e = np.exp(hi)
            if lo is not None:
                e = e + e * lo
            y = e * records[..., 2] + e * records[..., 3] if exact else e * records[..., 2]
        else:
            y = hi - records[..., 4]
            if lo is not None:
                y = y + lo
    return y.astype(x3.dtype, copy=False)


def logsumexp_from_scales(scales):
    """float64 logsumexp of each slice from its (slices, 5) scale records."""
    state = scales[:, 0]
    with np.errstate(all="ignore"):
        finite = scales[:, 1] + scales[:, 4]
    special = np.where(state == POS_INF, np.inf, np.where(state == NEG_INF, -np.inf, np.nan))
    return np.where(state == FINITE, finite, special)
