"""Argument normalisation shared by the C and the NumPy backends.

`plan()` checks every argument against the public contract (DESIGN.md §1
and §3) and lays the input out as a C-contiguous ``(outer, n, inner)`` array
reduced along ``n`` -- a view of the caller's array whenever its memory
allows, one copy otherwise (the copy also converts to a requested `dtype`).
A `where` mask is laid out the same way. A backend fills the plan's `y3`
from its `x3` and returns ``plan.finish()``; `plan_backward()` does the same
for the vector-Jacobian products. See docs/architecture.md.
"""

import math
import numbers
import operator

import numpy as np

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy < 1.25
    AxisError = np.AxisError  # noqa: NPY201

OPS = ("softmax", "log_softmax", "logsumexp")
BACKWARD_OPS = ("softmax_backward", "log_softmax_backward")
PRECISIONS = ("exact", "fast")

_FLOAT16 = np.dtype(np.float16)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_LONGDOUBLE = np.dtype(np.longdouble)
_BOOL = np.dtype(np.bool_)

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
    """`x` as an ndarray (lists, scalars, np.matrix...); masked arrays are refused.

    The public functions read a masked array's mask first (`split_mask`);
    this refuses one where a mask has no meaning (logsumexp's `b`).
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError("a masked array is not accepted here; pass its data (and a where= mask)")
    return np.asarray(x)


def split_mask(x, where):
    """A masked array's data, with ``~mask`` and-ed into `where`; other `x` as given."""
    if not isinstance(x, np.ma.MaskedArray):
        return x, where
    mask = np.ma.getmask(x)
    data = np.asarray(x.data)
    if mask is np.ma.nomask:
        return data, where
    keep = ~mask
    return data, keep if where is None else np.logical_and(_bool_array(where), keep)


def _bool_array(where):
    where = np.asarray(where)
    if where.dtype != _BOOL:
        raise TypeError(f"where must be an array of booleans, not of dtype {where.dtype}")
    return where


def where_mask(where, shape):
    """`where` as a bool array broadcast to `shape`; None when it excludes nothing.

    Only a mask smaller than `shape` (one that broadcasts) is scanned for that:
    scanning a full-size mask would cost a pass over it on every call, and the
    masked kernels give the same result for an all-True mask anyway.
    """
    if where is None:
        return None
    where = _bool_array(where)
    try:
        broadcast = np.broadcast_to(where, shape)
    except ValueError:
        raise ValueError(
            f"where of shape {where.shape} cannot be broadcast to the input's shape {shape}"
        ) from None
    if (where.size < broadcast.size or broadcast.size <= 1) and where.all():
        return None
    return broadcast


def check_temperature(temperature):
    """`temperature` as a Python float: a positive finite real scalar."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, not {type(temperature).__name__}")
    try:
        value = float(temperature)
    except OverflowError:  # an int beyond float's range
        value = math.inf
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"temperature must be positive and finite, not {temperature!r}")
    return value


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


def _requested_dtypes(input_dtype, dtype):
    """dtypes() of the `dtype=` option, which must be floating."""
    try:
        requested = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype, not {dtype!r}") from None
    if requested.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, not {requested}")
    if input_dtype.kind == "c":
        raise TypeError(f"complex input cannot be computed in {requested}")
    return dtypes(requested)


def scipy_special():
    """scipy.special, which computes complex input; TypeError without SciPy."""
    try:
        import scipy.special
    except ImportError:
        raise TypeError("complex input needs SciPy installed") from None
    return scipy.special


def refuse_complex_options(where, temperature=1.0):
    """Complex input goes to scipy.special, which takes neither option."""
    if where is not None or temperature != 1.0:
        raise TypeError("complex input takes neither where= nor temperature=")


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
                f"axis must be None, an integer or a tuple of integers, not {type(item).__name__}"
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
    logsumexp), None when the route is "done". `w3` is None or the bool mask
    laid out like `x3`; `g3` the gradient laid out like `x3` (backward plans
    only, where `x3` is the forward output); `temperature` a float (1.0: none).
    """

    __slots__ = (
        "route",
        "x3",
        "y3",
        "w3",
        "g3",
        "precision",
        "temperature",
        "_op",
        "_out",
        "_y3_is_out",
        "_dtype",
        "_shape",
        "_order",
        "_layout_shape",
        "_restore",
        "_c_order",
        "_result",
    )

    def arrange(self, other, dtype=None):
        """An array of the input's shape laid out like `x3` (a C-contiguous copy).

        `dtype` defaults to `x3`'s.
        """
        if self._order is not None:
            other = other.transpose(self._order)
        dtype = self.x3.dtype if dtype is None else dtype
        return np.ascontiguousarray(other, dtype=dtype).reshape(self.x3.shape)

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


def _new_plan(op, out, precision, temperature, result_dtype, result_shape):
    p = Plan()
    p.precision = precision
    p.temperature = temperature
    p.w3 = p.g3 = None
    p._op = op
    p._out = out
    p._y3_is_out = False
    p._dtype = result_dtype
    p._shape = result_shape
    return p


def plan(
    op,
    x,
    axis,
    out,
    precision,
    keepdims=False,
    *,
    where=None,
    temperature=1.0,
    dtype=None,
    empty=np.empty,
):
    """Validate a call and lay its input out for a backend (see the module doc).

    `empty(shape3, dtype)` allocates a fresh `y3` (the C backend's draws large ones from its
    buffer cache).
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, not {op!r}")
    _check_precision(precision)
    reduces = op == "logsumexp"
    if reduces and (temperature != 1.0 or dtype is not None):
        raise ValueError("logsumexp takes neither temperature nor dtype")
    temperature = check_temperature(temperature)
    x, where = split_mask(x, where)
    x = as_array(x)
    compute, result_dtype, route = dtypes(x.dtype)
    if dtype is not None:
        compute, result_dtype, route = _requested_dtypes(x.dtype, dtype)
    if route == "scipy":
        refuse_complex_options(where, temperature)
    # As if x.astype(float16) came first: round to float16 before the float32 compute.
    through = _FLOAT16 if result_dtype == _FLOAT16 and x.dtype != _FLOAT16 else None
    if reduces and x.ndim == 0:
        x = x.reshape(1)  # scipy reads a 0-d `a` as shape (1,)
    shape = x.shape
    ndim = x.ndim
    axes = normalize_axes(axis, ndim)
    where = where_mask(where, shape)
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

    p = _new_plan(op, out, precision, temperature, result_dtype, result_shape)
    if route == "scipy" or x.size == 0 or ndim == 0:
        p.route = "done"
        p.x3 = p.y3 = None
        p._result = _known_result(op, x, axes, result_shape, result_dtype, keepdims, where)
        return p

    p.route = route
    _lay_out(p, x, axes, compute, through)
    if where is not None:
        p.w3 = p.arrange(where, _BOOL)
    if reduces:
        # y3 holds the kept axes in increasing order, or reversed for a
        # Fortran-ordered input.
        if p._c_order or p._order is None:
            p._layout_shape, p._restore = reduced_shape, None
        else:
            p._layout_shape = reduced_shape[::-1]
            p._restore = tuple(range(len(kept) - 1, -1, -1))
        p.y3 = np.empty(p.x3.shape[::2], compute)
        return p
    _place_destination(p, out, (p.x3,), empty)
    return p


def plan_backward(op, grad, y, axis, out, where, empty=np.empty):
    """Validate a vector-Jacobian product call; x3 is `y` laid out, g3 is `grad`; `empty` as
    for plan()."""
    if op not in BACKWARD_OPS:
        raise ValueError(f"op must be one of {BACKWARD_OPS}, not {op!r}")
    grad, where = split_mask(grad, where)
    y, where = split_mask(y, where)
    grad = as_array(grad)
    y = as_array(y)
    if grad.shape != y.shape:
        raise ValueError(
            f"grad has shape {grad.shape} but y has shape {y.shape}; they must be equal"
        )
    for array in (grad, y):
        if dtypes(array.dtype)[2] == "scipy":
            raise TypeError(f"{op} does not take complex input")
    compute, result_dtype, route = dtypes(np.result_type(grad, y))
    shape = y.shape
    axes = normalize_axes(axis, y.ndim)
    where = where_mask(where, shape)
    if out is not None:
        _check_out(out, shape, result_dtype)

    p = _new_plan(op, out, "exact", 1.0, result_dtype, shape)
    if y.size == 0:
        p.route = "done"
        p.x3 = p.y3 = None
        p._result = np.empty(shape, result_dtype)
        return p
    p.route = route
    _lay_out(p, y, axes, compute, None)  # 0-d: one row of one element
    p.g3 = p.arrange(grad)
    if where is not None:
        p.w3 = p.arrange(where, _BOOL)
    _place_destination(p, out, (p.x3, p.g3), empty)
    return p


def _lay_out(p, x, axes, compute, through):
    """Set p.x3 (and how to undo its layout): `x` as (outer, n, inner) in `compute`.

    The reduced axes become one run of memory: as they are when they are
    adjacent in a C- or Fortran-contiguous array, else moved last. `through`
    is a dtype to round to before converting to `compute`.
    """
    shape = x.shape
    ndim = x.ndim
    flags = x.flags
    order = None
    if not flags.c_contiguous and flags.f_contiguous:
        order = tuple(range(ndim - 1, -1, -1))
    if not axes or axes[-1] - axes[0] == len(axes) - 1:
        first, last = (axes[0], axes[-1]) if axes else (ndim, ndim - 1)
        outer = math.prod(shape[:first])
        n = math.prod(shape[first : last + 1])
        inner = math.prod(shape[last + 1 :])
        if order is not None:
            outer, inner = inner, outer
        p._c_order = False  # the result keeps the input's memory order
    else:
        kept = tuple(i for i in range(ndim) if i not in axes)
        order = kept + axes
        outer = math.prod(shape[i] for i in kept)
        n = math.prod(shape[i] for i in axes)
        inner = 1
        p._c_order = True  # the result is C-contiguous, not in the copy's order
    layout = x if order is None else x.transpose(order)
    if through is not None or not (
        layout.flags.c_contiguous and flags.aligned and x.dtype == compute
    ):
        with np.errstate(over="ignore"):  # dtype=: values beyond its range become inf
            if through is not None:
                layout = layout.astype(through)
            layout = np.array(layout, dtype=compute, order="C")  # native, aligned copy
    p.x3 = layout.reshape(outer, n, inner)
    p._order = order
    p._layout_shape = layout.shape
    p._restore = None if order is None else _inverse(order)


def _place_destination(p, out, sources, empty):
    """Set p.y3: a view of `out` when its memory has x3's layout and it does not
    partially overlap any of `sources` (exact aliasing, in place, is fine); else
    `empty(shape3, dtype)`."""
    y3 = None
    shape3 = p.x3.shape
    if out is not None and out.dtype == p.x3.dtype and out.flags.aligned:
        out_layout = out if p._order is None else out.transpose(p._order)
        if out_layout.flags.c_contiguous:
            out3 = out_layout.reshape(shape3)
            # Both are single blocks of memory, so overlapping bounds are
            # real overlap; only exact aliasing (in place) may reach a kernel.
            if all(
                not np.may_share_memory(out3, source) or _same_start(out3, source)
                for source in sources
            ):
                y3 = out3
    p._y3_is_out = y3 is not None
    p.y3 = y3 if y3 is not None else empty(shape3, p.x3.dtype)


def _known_result(op, x, axes, shape, dtype, keepdims, where):
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
    if where is not None:  # a 0-d row whose only entry is excluded
        return np.asarray(0.0 if op == "softmax" else -np.inf, dtype)
    # A 0-d softmax row: its single value is the maximum, unless not finite.
    value = 1.0 if op == "softmax" else 0.0
    return np.where(np.isfinite(x), value, np.nan).astype(dtype)
