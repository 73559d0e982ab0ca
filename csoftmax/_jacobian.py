"""softmax_jacobian: the full derivative ``diag(y) - y yᵀ`` of each softmax slice.

Written on the public softmax of the active backend; the outer product is
NumPy's job. The diagonal ``y_i (1 - y_i)`` is computed as ``y_i`` times the
sum of the *other* outputs (prefix plus suffix sums of positive terms), so it
stays accurate where ``y_i`` rounds to 1 and ``y_i - y_i**2`` would be 0.
"""

import numpy as np

import csoftmax

from . import _api


def softmax_jacobian(x, axis=-1):
    """The Jacobian of softmax along `axis`: shape ``x.shape`` without `axis` + ``(n, n)``."""
    return jacobian(csoftmax.softmax, x, axis)


def jacobian(softmax, x, axis=-1):
    """softmax_jacobian computed from the given `softmax` function."""
    x = _api.as_array(x)
    if axis is None or isinstance(axis, (tuple, list)):
        raise TypeError("softmax_jacobian takes one axis (an int)")
    (axis,) = _api.normalize_axes(axis, x.ndim)
    y = np.moveaxis(softmax(x, axis=axis), axis, -1)
    compute = np.float64 if y.dtype.itemsize <= 4 else y.dtype  # float16/32: in float64
    work = y.astype(compute)
    prefix = np.cumsum(work, axis=-1)
    suffix = np.cumsum(work[..., ::-1], axis=-1)[..., ::-1]
    others = np.zeros_like(work)  # sum over j != i of y_j
    others[..., 1:] += prefix[..., :-1]
    others[..., :-1] += suffix[..., 1:]
    jac = work[..., :, None] * work[..., None, :]
    np.negative(jac, out=jac)
    index = np.arange(work.shape[-1])
    jac[..., index, index] = work * others
    return jac.astype(y.dtype, copy=False)
