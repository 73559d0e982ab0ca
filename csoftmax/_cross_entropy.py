"""cross_entropy: argument handling shared by both backends, and the pure-NumPy implementation.

`prepare()` checks a call against PyTorch's ``nn.functional.cross_entropy`` semantics and lays the
logits out as a C-contiguous ``(outer, n, inner)`` array with the ``n`` classes in the middle; a
backend fills per-row losses (and the gradient) and returns ``problem.finish(...)``.
`compute_numpy()` is the NumPy implementation: the fallback backend's, the one for dtypes the C
kernels do not take (longdouble), and the tests' oracle.  It does materialise log_softmax (in
float64 for float32 logits, else in longdouble where that is wider), which the C backend never
does.
"""

import math
import operator

import numpy as np

from . import _api, _fallback

REDUCTIONS = ("none", "sum", "mean")
_INT64 = np.iinfo(np.int64)


def _check_axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError("axis must be an integer, not bool")
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, not {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise _api.AxisError(axis, ndim)
    return axis % ndim


def _check_scalars(ignore_index, reduction, label_smoothing):
    if not (isinstance(reduction, str) and reduction in REDUCTIONS):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError("ignore_index must be an integer, not bool")
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an integer, not {type(ignore_index).__name__}"
        ) from None
    if not _INT64.min <= ignore_index <= _INT64.max:
        raise ValueError(f"ignore_index {ignore_index} does not fit in int64")
    if isinstance(label_smoothing, (bool, np.bool_)) or not isinstance(
        label_smoothing, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"label_smoothing must be a real number, not {type(label_smoothing).__name__}"
        )
    label_smoothing = float(label_smoothing)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], not {label_smoothing}")
    return ignore_index, label_smoothing


def _contiguous(a, dtype, shape):
    """`a` as a native, aligned, C-contiguous array of `dtype` viewed with `shape`."""
    if not (a.flags.c_contiguous and a.flags.aligned and a.dtype == dtype):
        a = np.array(a, dtype=dtype, order="C")
    return a.reshape(shape)


class Problem:
    """One cross_entropy call laid out for a backend.

    `route` is "kernel" (x3 is float32/float64) or "numpy"; `x3` the ``(outer, n, inner)``
    logits; `target` the ``(outer, inner)`` int64 class indices or None; `probability` the
    ``(outer, n, inner)`` probability targets (x3's dtype) or None; `weight` the ``n`` class
    weights (float64, longdouble on the numpy route) or None.
    """

    __slots__ = (
        "route",
        "x3",
        "target",
        "probability",
        "weight",
        "ignore_index",
        "label_smoothing",
        "reduction",
        "_dtype",
        "_shape",
        "_rows_shape",
    )

    def finish(self, losses, loss, grad3=None):
        """The public result from the per-row `losses`, the reduced `loss` and `grad3`."""
        with np.errstate(over="ignore"):  # float16 results may overflow to inf
            if self.reduction == "none":
                result = np.asarray(losses).reshape(self._rows_shape).astype(self._dtype)
            else:
                result = np.asarray(loss).astype(self._dtype)[()]
            if grad3 is None:
                return result
            return result, grad3.reshape(self._shape).astype(self._dtype, copy=False)


def prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing):
    """Validate a cross_entropy call and lay it out (see the module doc)."""
    ignore_index, label_smoothing = _check_scalars(ignore_index, reduction, label_smoothing)
    x = _api.as_array(logits)
    compute, result_dtype, route = _api.dtypes(x.dtype)
    if route == "scipy":
        raise TypeError(f"cross_entropy does not support logits of dtype {x.dtype}")
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes)")
    axis = _check_axis(axis, x.ndim)
    shape = x.shape
    n = shape[axis]
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    rows_shape = shape[:axis] + shape[axis + 1 :]

    p = Problem()
    p.route = route
    p.ignore_index = ignore_index
    p.label_smoothing = label_smoothing
    p.reduction = reduction
    p._dtype = result_dtype
    p._shape = shape
    p._rows_shape = rows_shape
    p.target = p.probability = p.weight = None

    t = _api.as_array(target)
    if t.dtype.kind in "iu":
        if t.shape != rows_shape:
            raise ValueError(
                f"class-index target has shape {t.shape}; logits of shape {shape} with classes "
                f"along axis {axis} need {rows_shape}"
            )
        if t.size and (t.min() < 0 or t.max() >= n):
            bad = (t != ignore_index) & ((t < 0) | (t >= n))
            if bad.any():
                raise IndexError(
                    f"target {t[bad].flat[0]} is out of range for {n} classes "
                    f"(and is not ignore_index={ignore_index})"
                )
        p.target = _contiguous(t, np.int64, (outer, inner))
    elif t.dtype.kind == "f":
        if t.shape != shape:
            raise ValueError(
                f"probability target has shape {t.shape}; it must have the logits' shape {shape}"
            )
        p.probability = _contiguous(t, compute, (outer, n, inner))
    else:
        raise TypeError(
            "target must hold integer class indices or floating-point class probabilities, "
            f"not {t.dtype}"
        )

    if weight is not None:
        w = _api.as_array(weight)
        if w.dtype.kind not in "iuf":
            raise TypeError(f"weight must be a real array, not of dtype {w.dtype}")
        if w.shape != (n,):
            raise ValueError(f"weight has shape {w.shape}; it must be ({n},), one per class")
        work = np.longdouble if route == "numpy" else np.float64
        p.weight = _contiguous(w, work, (n,))
    p.x3 = _contiguous(x, compute, (outer, n, inner))
    return p


def compute_numpy(p, return_grad):
    """(per-row losses, reduced loss, gradient or None) of a prepared problem, with NumPy."""
    # float32 works in float64; float64 in longdouble where it is wider (the row sums of
    # label smoothing and probability targets have thousands of terms).
    wide = p.x3.dtype == np.longdouble or (
        p.x3.dtype == np.float64 and _fallback.LONGDOUBLE_IS_WIDER
    )
    work = np.longdouble if wide else np.float64
    x3 = p.x3.astype(work)
    outer, n, inner = x3.shape
    eps = p.label_smoothing
    keep = 1.0 - eps
    per_class = eps / n if n else 0.0
    w = np.ones(n, work) if p.weight is None else p.weight.astype(work)
    w3 = w[None, :, None]
    logp = np.empty_like(x3)
    if x3.size:
        _fallback.compute3("log_softmax", x3, logp, "exact")
    # 0 * -inf is NaN, as in torch (a zero target or weight on a -inf logit).
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if p.probability is not None:
            share = (p.probability.astype(work) * keep + per_class) * w3
            losses = -(share * logp).sum(axis=1)
            ignored = np.zeros(losses.shape, bool)
            denominator = work(outer * inner if n else 0)
        else:
            ignored = p.target == p.ignore_index
            index = np.where(ignored, 0, p.target)
            target_weight = np.where(ignored, 0, w[index] if n else 0)
            share = np.zeros_like(x3)
            if n:
                share += per_class * w3
                np.put_along_axis(
                    share,
                    index[:, None, :],
                    keep * target_weight[:, None, :]
                    + np.take_along_axis(share, index[:, None, :], axis=1),
                    axis=1,
                )
                picked = np.take_along_axis(logp, index[:, None, :], axis=1)[:, 0, :]
                losses = -target_weight * picked
                if eps > 0:
                    losses = keep * losses + per_class * -(w3 * logp).sum(axis=1)
            else:
                losses = np.zeros((outer, inner), work)
            losses = np.where(ignored, 0, losses)
            denominator = target_weight.sum(dtype=work)
        total = losses.sum(dtype=work)
        loss = total / denominator if p.reduction == "mean" else total
        if not return_grad:
            return losses, loss, None
        factor = 1 / denominator if p.reduction == "mean" else work(1)
        softmax = np.empty_like(x3)
        if x3.size:
            _fallback.compute3("softmax", x3, softmax, "exact")
        grad = factor * (share.sum(axis=1)[:, None, :] * softmax - share)
        grad = np.where(ignored[:, None, :], 0, grad)
    return losses, loss, grad


def cross_entropy(
    logits,
    target,
    axis=-1,
    *,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    return_grad=False,
):
    """Cross-entropy loss from logits: ``torch.nn.functional.cross_entropy`` for NumPy.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores with the classes along `axis` (default: the last axis).
    target : array_like
        Integer class indices of ``logits.shape`` without `axis`, or floating-point class
        probabilities of ``logits.shape``.
    weight : array_like, optional
        One weight per class (1-D, length ``logits.shape[axis]``).
    ignore_index : int
        Rows whose class index equals it contribute 0 and are left out of the mean
        (class-index targets only).
    reduction : {"mean", "sum", "none"}
        "mean": ``sum(w[t_i] * loss_i) / sum(w[t_i])`` over the rows not ignored (class
        indices) or the mean over the rows (probabilities); a mean over zero weight is NaN.
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution, as torch does.
    return_grad : bool
        Also return the gradient of the (reduced; for "none", summed) loss with respect to
        `logits`, same shape and dtype, from the same pass.

    Returns
    -------
    loss : NumPy scalar ("mean", "sum") or array ("none") of the logits' result dtype
        (float16 computed in float32, integers as float64).
    grad : ndarray, only with ``return_grad=True``.

    A class index outside ``[0, C)`` that is not `ignore_index` raises IndexError.
    """
    p = prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing)
    losses, loss, grad = compute_numpy(p, return_grad)
    return p.finish(losses, loss, grad)
