"""Argument normalisation shared by the C and the NumPy backends.

`plan()` checks every argument against the public contract (DESIGN.md §1)
and lays the input out as a C-contiguous ``(outer, n, inner)`` array reduced
along ``n`` -- a view of the caller's array whenever its memory allows, one
copy otherwise. A backend fills the plan's `y3` from its `x3` and returns
``plan.finish()``; see docs/architecture.md.
"""

import math
import operator

import numpy as np

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    AxisError = np.AxisError  # noqa: NPY201

OPS = ("softmax", "log_softmax", "logsumexp")
PRECISIONS = ("exact", "fast")

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_LONGDOUBLE = np.dtype(np.longdouble)

# Input scalar type -> (compute dtype, result dtype, route). Keyed by type so
# that byte-swapped dtypes find their entry too.
_DTYPES = {
    np.float32: (_FLOAT32, _FLOAT32, "kernel"),
    np.float64: (_FLOAT64, _FLOAT64, "kernel"),
    np.float16: (_FLOAT32, _FLOAT16, "kernel"),  # never summed in float16
    np.longdouble: (_LONGDOUBLE, _LONGDOUBLE, "numpy"),
}
for _code in np.typecodes["AllInteger"] + "?":
    # Integers and booleans become float64 before anything is subtracted.
    _DTYPES[np.dtype(_code).type] = (_FLOAT64, _FLOAT64, "kernel")
del _code


def as_array(x):
    """`x` as an ndarray (lists, scalars, np.matrix...); masked arrays are refused."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            "csoftmax does not accept masked arrays yet; pass the data "
            "(logsumexp: with b=0 where masked)"
        )
    return np.asarray(x)


def dtypes(dtype):
    """(compute dtype, result dtype, route) for an input dtype, or TypeError.

    The route is "kernel", "numpy" or "scipy" (complex input).
    """
    entry = _DTYPES.get(dtype.type)
    if entry is not None:
        return entry
    if dtype.kind == "c":
        native = dtype.newbyteorder("=")
        return native, native, "scipy"
    raise TypeError(f"csoftmax does not support arrays of dtype {dtype}")


def scipy_special():
    """scipy.special, which computes complex input; TypeError without SciPy."""
    try:
        import scipy.special
    except ImportError:
        raise TypeError("complex input needs SciPy installed") from None
    return scipy.special


def normalize_axes(axis, ndim):
    """`axis` (None, an int or a tuple/list of ints) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, quickly
        return (axis % ndim,)
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    axes = []
    for item in items:
        if isinstance(item, (bool, np.bool_)):
            raise TypeError("axis must be an integer or a tuple of integers, not bool")
        try:
            index = operator.index(item)
        except TypeError:
            raise TypeError(
                "axis must be None, an integer or a tuple of integers, "
                f"not {type(item).__name__}"
            ) from None
        if not -ndim <= index < ndim:
            raise AxisError(index, ndim)
        axes.append(index % ndim)
    axes.sort()
    if len(set(axes)) != len(axes):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(axes)


def _check_precision(precision):
    if not (isinstance(precision, str) and precision in PRECISIONS):
        raise ValueError(f"precision must be 'exact' or 'fast', not {precision!r}")


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray) or isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; the result has shape {shape}")
    if out.dtype.type is not dtype.type:
        raise TypeError(f"out has dtype {out.dtype}; the result has dtype {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def _inverse(permutation):
    inverse = [0] * len(permutation)
    for position, axis in enumerate(permutation):
        inverse[axis] = position
    return tuple(inverse)


def _same_start(a, b):
    return a.__array_interface__["data"][0] == b.__array_interface__["data"][0]


class Plan:
    """How one call runs: see docs/architecture.md.

    `route` is "kernel", "numpy" or "done"; `x3` / `y3` are the
    ``(outer, n, inner)`` input and the destination (``(outer, inner)`` for
    logsumexp), None when the route is "done".
    """

    __slots__ = (
        "route", "x3", "y3", "precision",
        "_op", "_out", "_y3_is_out", "_dtype", "_shape", "_order",
        "_layout_shape", "_restore", "_c_order", "_result",
    )

    def arrange(self, other):
        """An array of the input's shape laid out like `x3` (a C-contiguous copy)."""
        if self._order is not None:
            other = other.transpose(self._order)
        return np.ascontiguousarray(other, dtype=self.x3.dtype).reshape(self.x3.shape)

    def result_from(self, y):
        """An array laid out like `y3` as the public result (shape, axis order, dtype)."""
        y = y.reshape(self._layout_shape)
        if self._restore is not None:
            y = y.transpose(self._restore)
        if y.shape != self._shape:  # logsumexp with keepdims
            y = y.reshape(self._shape)
        if y.dtype != self._dtype:
            with np.errstate(over="ignore"):  # float16 results may overflow to inf
                y = y.astype(self._dtype, order="C" if self._c_order else "K")
        elif self._c_order:
            y = np.ascontiguousarray(y)
        if y.ndim == 0 and self._op == "logsumexp":
            return y[()]  # a NumPy scalar, as scipy.special.logsumexp returns
        return y

    def finish(self):
        """The public function's return value; writes into `out` when given."""
        out = self._out
        if self._y3_is_out:
            return out
        if self.route == "done":
            result = self._result
        else:
            result = self.result_from(self.y3)
        if out is None:
            return result
        with np.errstate(over="ignore"):
            np.copyto(out, result)
        return out


def plan(op, x, axis, out, precision, keepdims=False):
    """Validate a call and lay its input out for a backend (see the module doc)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, not {op!r}")
    _check_precision(precision)
    x = as_array(x)
    compute, result_dtype, route = dtypes(x.dtype)
    reduces = op == "logsumexp"
    if reduces and x.ndim == 0:
        x = x.reshape(1)  # scipy reads a 0-d `a` as shape (1,)
    shape = x.shape
    ndim = x.ndim
    axes = normalize_axes(axis, ndim)
    kept = tuple(i for i in range(ndim) if i not in axes)
    if reduces:
        reduced_shape = tuple(shape[i] for i in kept)
        if keepdims:
            result_shape = tuple(1 if i in axes else size for i, size in enumerate(shape))
        else:
            result_shape = reduced_shape
    else:
        result_shape = shape
    if out is not None:
        _check_out(out, result_shape, result_dtype)

    p = Plan()
    p.precision = precision
    p._op = op
    p._out = out
    p._y3_is_out = False
    p._dtype = result_dtype
    p._shape = result_shape
    if route == "scipy" or x.size == 0 or ndim == 0:
        p.route = "done"
        p.x3 = p.y3 = None
        p._result = _known_result(op, x, axes, result_shape, result_dtype, keepdims)
        return p

    # Lay the reduced axes out as one run of memory: as they are when they
    # are adjacent in a C- or Fortran-contiguous array, else moved last.
    flags = x.flags
    order = None
    if not flags.c_contiguous and flags.f_contiguous:
        order = tuple(range(ndim - 1, -1, -1))
    if not axes or axes[-1] - axes[0] == len(axes) - 1:
        first, last = (axes[0], axes[-1]) if axes else (ndim, ndim - 1)
        outer = math.prod(shape[:first])
        n = math.prod(shape[first:last + 1])
        inner = math.prod(shape[last + 1:])
        if order is not None:
            outer, inner = inner, outer
        p._c_order = False  # the result keeps the input's memory order
    else:
        order = kept + axes
        outer = math.prod(shape[i] for i in kept)
        n = math.prod(shape[i] for i in axes)
        inner = 1
        p._c_order = True  # the result is C-contiguous, not in the copy's order
    layout = x if order is None else x.transpose(order)
    if not (layout.flags.c_contiguous and flags.aligned and x.dtype == compute):
        layout = np.array(layout, dtype=compute, order="C")  # native, aligned copy
    x3 = layout.reshape(outer, n, inner)

    p.route = route
    p.x3 = x3
    p._order = order
    if reduces:
        # y3 holds the kept axes in increasing order, or reversed for a
        # Fortran-ordered input.
        if p._c_order or order is None:
            p._layout_shape, p._restore = reduced_shape, None
        else:
            p._layout_shape = reduced_shape[::-1]
            p._restore = tuple(range(len(kept) - 1, -1, -1))
        p.y3 = np.empty((outer, inner), compute)
        return p

    p._layout_shape = layout.shape
    p._restore = None if order is None else _inverse(order)
    y3 = None
    if out is not None and out.dtype == compute and out.flags.aligned:
        out_layout = out if order is None else out.transpose(order)
        if out_layout.flags.c_contiguous:
            out3 = out_layout.reshape(outer, n, inner)
            # Both are single blocks of memory, so overlapping bounds are
            # real overlap; only exact aliasing (in place) may reach a kernel.
            if not np.may_share_memory(out3, x3) or _same_start(out3, x3):
                y3 = out3
    p._y3_is_out = y3 is not None
    p.y3 = y3 if y3 is not None else np.empty((outer, n, inner), compute)
    return p


def _known_result(op, x, axes, shape, dtype, keepdims):
    """The result of a call that needs no kernel: complex, empty or 0-d input."""
    if x.size == 0:
        if op == "logsumexp":
            result = np.full(shape, -np.inf, dtype)
            return result[()] if result.ndim == 0 else result
        return np.empty(shape, dtype)
    if dtype.kind == "c":
        special = scipy_special()
        with np.errstate(all="ignore"):
            if op == "logsumexp":
                return special.logsumexp(x, axis=axes, keepdims=keepdims)
            return np.asarray(getattr(special, op)(x, axis=axes))
    # A 0-d softmax row: its single value is the maximum, unless not finite.
    value = 1.0 if op == "softmax" else 0.0
    return np.where(np.isfinite(x), value, np.nan).astype(dtype)
