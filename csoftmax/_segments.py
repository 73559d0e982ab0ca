"""segment_softmax / segment_log_softmax / segment_logsumexp: argument handling shared by both
backends, and the pure-NumPy implementation.

`plan()` checks `indptr` (CSR offsets cutting axis 0 of `x` into segments) and `out`, and lays `x`
out as a C-contiguous ``(N, inner)`` array; a backend fills the plan's `y2` and returns
``plan.finish()``.  `compute_numpy()` groups the segments by length, so that each group is one
``(segments, length, inner)`` call of the fallback's kernel (`_fallback.compute3`): exact, and
vectorised however ragged the segments are.
"""

import math

import numpy as np

from . import _api, _fallback

OPS = ("softmax", "log_softmax", "logsumexp")


def _check_indptr(indptr, rows):
    indptr = _api.as_array(indptr)
    if indptr.dtype.kind not in "iu":
        raise TypeError(f"indptr must hold integers, not {indptr.dtype}")
    if indptr.ndim != 1:
        raise ValueError(f"indptr must be 1-D, not of shape {indptr.shape}")
    if indptr.size == 0:
        raise ValueError("indptr must have at least one entry (indptr[0] == 0)")
    if indptr[0] != 0:
        raise ValueError(f"indptr[0] must be 0, not {indptr[0]}")
    if indptr[-1] != rows:
        raise ValueError(f"indptr[-1] must be len(x) == {rows}, not {indptr[-1]}")
    steps = np.diff(indptr.astype(np.int64))  # 0 <= entries <= rows: no overflow
    if steps.size and steps.min() < 0:
        where = int(np.argmax(steps < 0))
        raise ValueError(
            f"indptr must be non-decreasing: indptr[{where}] = {indptr[where]} > "
            f"indptr[{where + 1}] = {indptr[where + 1]}"
        )
    return np.ascontiguousarray(indptr, dtype=np.int64)


class SegmentPlan:
    """How one segment call runs: `route` ("kernel", "numpy" or "done"), the ``(N, inner)``
    input `x2`, the int64 `indptr`, and the destination `y2` (``(N, inner)``, or
    ``(segments, inner)`` for logsumexp) in x2's dtype, which may be `out` or `x2` itself."""

    __slots__ = (
        "route",
        "op",
        "precision",
        "x2",
        "y2",
        "indptr",
        "_out",
        "_y2_is_out",
        "_dtype",
        "_shape",
    )

    def finish(self):
        """The public result; writes into `out` when given."""
        if self._y2_is_out:
            return self._out
        result = self.y2.reshape(self._shape)
        if result.dtype != self._dtype:
            with np.errstate(over="ignore"):  # float16 results may overflow to inf
                result = result.astype(self._dtype)
        if self._out is None:
            return result
        np.copyto(self._out, result)
        return self._out


def plan(op, x, indptr, out=None, precision="exact"):
    """Validate a segment call and lay it out (see the module doc)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, not {op!r}")
    if not (isinstance(precision, str) and precision in _api.PRECISIONS):
        raise ValueError(f"precision must be 'exact' or 'fast', not {precision!r}")
    x = _api.as_array(x)
    compute, result_dtype, route = _api.dtypes(x.dtype)
    if route == "scipy":
        raise TypeError(f"segment functions do not support arrays of dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (the rows the segments cut)")
    indptr = _check_indptr(indptr, x.shape[0])
    segments = indptr.size - 1
    rows, inner = x.shape[0], math.prod(x.shape[1:])
    shape = (segments,) + x.shape[1:] if op == "logsumexp" else x.shape
    if out is not None:
        _api._check_out(out, shape, result_dtype)

    p = SegmentPlan()
    p.op, p.precision, p.indptr = op, precision, indptr
    p._out, p._dtype, p._shape = out, result_dtype, shape
    p._y2_is_out = False
    p.route = route if x.size else "done"
    x2 = x
    if not (x.flags.c_contiguous and x.flags.aligned and x.dtype == compute):
        x2 = np.array(x, dtype=compute, order="C")
    p.x2 = x2 = x2.reshape(rows, inner)
    if op == "logsumexp":
        p.y2 = np.full((segments, inner), -np.inf, compute)  # empty segments stay -inf
        return p
    y2 = None
    if out is not None and out.dtype == compute and out.flags.c_contiguous and out.flags.aligned:
        out2 = out.reshape(rows, inner)
        # in place (the same buffer) is fine; other overlap goes through a fresh buffer
        if not np.may_share_memory(out2, x2) or (
            out2.__array_interface__["data"][0] == x2.__array_interface__["data"][0]
        ):
            y2 = out2
    p._y2_is_out = y2 is not None
    p.y2 = y2 if y2 is not None else np.empty((rows, inner), compute)
    return p


def compute_numpy(p):
    """Fill `p.y2` with NumPy: one fallback kernel call per distinct segment length."""
    lengths = np.diff(p.indptr)
    starts = p.indptr[:-1]
    for length in np.unique(lengths[lengths > 0]):
        chosen = np.flatnonzero(lengths == length)
        rows = starts[chosen][:, None] + np.arange(length)  # (segments, length)
        x3 = p.x2[rows]  # a copy: y2 may be x2
        if p.op == "logsumexp":
            y3 = np.empty((chosen.size, x3.shape[2]), x3.dtype)
            _fallback.compute3(p.op, x3, y3, p.precision)
            p.y2[chosen] = y3
        else:
            y3 = np.empty_like(x3)
            _fallback.compute3(p.op, x3, y3, p.precision)
            p.y2[rows] = y3


def _run(op, x, indptr, out=None, precision="exact"):
    p = plan(op, x, indptr, out, precision)
    if p.route != "done":
        compute_numpy(p)
    return p.finish()


def segment_softmax(x, indptr, *, out=None, precision="exact"):
    """Softmax of every CSR segment of `x`'s rows, for each trailing position.

    `indptr` holds non-decreasing integers with ``indptr[0] == 0`` and ``indptr[-1] == len(x)``;
    segment ``s`` is ``x[indptr[s]:indptr[s + 1]]`` (empty ones are allowed) and is normalised
    along axis 0 on its own, bitwise as ``softmax(x[a:b], axis=0)`` on the C backend.  The
    result has `x`'s shape and dtype rules as `softmax`; `out` follows softmax's rules (it may
    be `x`).  ``precision="fast"`` is the classical algorithm (``x - max`` rounded once), as in
    `softmax`; the default "exact" keeps the 4-ULP bar.
    """
    return _run("softmax", x, indptr, out, precision)


def segment_log_softmax(x, indptr, *, out=None, precision="exact"):
    """Log-softmax of every CSR segment of `x`'s rows; arguments as `segment_softmax`."""
    return _run("log_softmax", x, indptr, out, precision)


def segment_logsumexp(x, indptr):
    """logsumexp of every CSR segment of `x`'s rows (see `segment_softmax`).

    Returns shape ``(len(indptr) - 1,) + x.shape[1:]``, ``-inf`` for an empty segment.
    """
    return _run("logsumexp", x, indptr)
