"""csoftmax on dask arrays: softmax, log_softmax and logsumexp, lazily.

``pip install "csoftmax[dask]"``. The functions take the in-memory
functions' arguments and return dask arrays; nothing runs until the caller
computes or stores the result.

* Reduced axes that each lie in one chunk: one task per chunk calls the
  in-memory function, so results are bitwise those of the in-memory call.
* Reduced axes that span chunks: pass 1 computes each chunk's exact
  per-slice partials (max, count of maxima, the other terms' sum as a
  double-double); one task per block of kept positions combines the partials
  of all chunks along the reduced axes in chunk order, with the in-memory
  long-row combine (src_c/row_scale.c); pass 2 computes each chunk's outputs
  from the combined scales, reading x again (REREAD). Two reads of the data,
  no rechunking, nothing materialised whole; results within the in-memory accuracy bar, with the
  same special-value rules whichever chunk holds the NaN or infinity.

The steps run in C (``csoftmax._native``) or, without the extension, in
NumPy (``csoftmax._dask_partials``). Importing this module does not import
dask; only building a result does.
"""

import math

import numpy as np

from csoftmax import _api

_INSTALL_HINT = 'csoftmax.dask needs dask: pip install "csoftmax[dask]"'

# "c" or "python"; None means csoftmax's own backend (tests set it).
_BACKEND = None
# Pass 2 reads x again (a clone of its graph) rather than keeping pass 1's chunks
# until the combine: memory stays at a few chunks per worker whatever the extent
# of the reduced axes.  False keeps them (less work when x is costly and fits).
REREAD = True


def is_dask_array(x):
    """True when `x` is a dask array (imports dask only for objects of dask's types)."""
    if not type(x).__module__.startswith("dask"):
        return False
    import dask.array

    return isinstance(x, dask.array.Array)


def softmax(x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None, precision="exact"):
    """csoftmax.softmax of a dask array, as a dask array (see the module doc)."""
    return _normalized("softmax", x, axis, out, where, temperature, dtype, precision)


def log_softmax(
    x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None, precision="exact"
):
    """csoftmax.log_softmax of a dask array, as a dask array (see the module doc)."""
    return _normalized("log_softmax", x, axis, out, where, temperature, dtype, precision)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, where=None):
    """csoftmax.logsumexp of a dask array, as a dask array (see the module doc)."""
    da = _dask_array()
    x = _as_dask(da, a)
    if b is not None or return_sign:
        return _weighted_logsumexp(da, x, axis, b, keepdims, return_sign, where)
    if x.ndim == 0:
        x = x.reshape(1)  # scipy reads a 0-d `a` as shape (1,)
    axes = _api.normalize_axes(axis, x.ndim)
    result_dtype, kernel = _dtypes(x.dtype)
    mask = _where_array(da, where, x)
    operands = (x,) if mask is None else (x, mask)
    kept = [i for i in range(x.ndim) if i not in axes]
    backend = _backend(1.0)
    if _within_chunks(x, axes):
        chunks = [(1,) if i in axes else x.chunks[i] for i in range(x.ndim)] if keepdims else None
        return da.map_blocks(
            _logsumexp_block,
            *operands,
            axes=axes,
            keepdims=keepdims,
            backend=backend,
            dtype=result_dtype,
            meta=np.empty((0,) * (x.ndim if keepdims else len(kept)), result_dtype),
            chunks=chunks,
            drop_axis=None if keepdims else axes,
        )
    _require_kernel(kernel, x.dtype, axes)
    scales = _combined_scales(da, operands, axes, "logsumexp", "exact", 1.0, backend)
    values = da.map_blocks(
        _logsumexp_from_scales,
        scales,
        result_dtype=result_dtype,
        backend=backend,
        drop_axis=len(kept),
        dtype=result_dtype,
        meta=np.empty((0,) * len(kept), result_dtype),
    )
    if keepdims:
        values = values[tuple(None if i in axes else slice(None) for i in range(x.ndim))]
    return values


def _weighted_logsumexp(da, x, axis, b, keepdims, return_sign, where):
    """logsumexp with b= or return_sign=: each chunk's signed logsumexp (in float64),
    then the signed logsumexp of those along the reduced axes, both by the in-memory
    function, so scipy's rules for signs, zero weights and infinities carry over."""
    b = np.ones((), x.dtype) if b is None else b
    weights = b if isinstance(b, da.Array) else np.asarray(b)
    sample = _memory_functions(_backend(1.0)).logsumexp(
        np.zeros(1, x.dtype), b=np.ones(1, weights.dtype) if weights.ndim else weights[()]
    )
    result_dtype = np.asarray(sample).dtype
    shape = np.broadcast_shapes(x.shape, weights.shape) or (1,)  # 0-d reads as (1,)
    x = da.broadcast_to(x, shape)
    weights = da.broadcast_to(weights, shape).rechunk(x.chunks)
    mask = _where_array(da, where, x)
    operands = (x, weights) if mask is None else (x, weights, mask)
    axes = _api.normalize_axes(axis, x.ndim)
    kept = [i for i in range(x.ndim) if i not in axes]
    index = _index(x.ndim)
    chunks = tuple((1,) * len(x.chunks[i]) if i in axes else x.chunks[i] for i in range(x.ndim))
    pieces = da.map_blocks(
        _signed_chunk,
        *operands,
        axes=axes,
        backend=_backend(1.0),
        chunks=chunks + ((2,),),
        new_axis=x.ndim,
        dtype=np.float64,
        meta=np.empty((0,) * (x.ndim + 1), np.float64),
    )
    kept_index = tuple(index[i] for i in kept)
    combined = da.blockwise(
        _combine_signed,
        kept_index + ("pair",),
        pieces,
        index + ("pair",),
        concatenate=False,
        axes=axes,
        result_dtype=result_dtype,
        backend=_backend(1.0),
        dtype=result_dtype,
        meta=np.empty((0,) * (len(kept) + 1), result_dtype),
    )
    value, sign = combined[..., 0], combined[..., 1]
    if keepdims:
        expand = tuple(None if i in axes else slice(None) for i in range(x.ndim))
        value, sign = value[expand], sign[expand]
    if not return_sign:
        return da.where(sign < 0, np.nan, value).astype(
            result_dtype
        )  # scipy: log of a negative sum
    return value, sign


# --- building the graphs ---------------------------------------------------


def _normalized(op, x, axis, out, where, temperature, dtype, precision):
    da = _dask_array()
    if out is not None:
        raise TypeError(
            "csoftmax.dask returns a lazy dask array and cannot fill out=; "
            "write the result with dask.array.store(result, out) instead"
        )
    temperature = _api.check_temperature(temperature)
    _api._check_precision(precision)
    x = _as_dask(da, x)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, not {dtype}")
        x = x.astype(dtype)
    axes = _api.normalize_axes(axis, x.ndim)
    result_dtype, kernel = _dtypes(x.dtype)
    mask = _where_array(da, where, x)
    operands = (x,) if mask is None else (x, mask)
    backend = _backend(temperature)
    meta = np.empty((0,) * x.ndim, result_dtype)
    if _within_chunks(x, axes):
        return da.map_blocks(
            _normalized_block,
            *operands,
            op=op,
            axes=axes,
            precision=precision,
            temperature=temperature,
            backend=backend,
            dtype=result_dtype,
            meta=meta,
        )
    _require_kernel(kernel, x.dtype, axes)
    scales = _combined_scales(da, operands, axes, op, precision, temperature, backend)
    index = _index(x.ndim)
    kept = tuple(index[i] for i in range(x.ndim) if i not in axes)
    again = _second_read(*operands)
    arguments = [again[0], index, scales, kept + ("record",)]
    if mask is not None:
        arguments += [again[1], index]
    return da.blockwise(
        _normalize_chunk,
        index,
        *arguments,
        concatenate=True,
        op=op,
        axes=axes,
        precision=precision,
        temperature=temperature,
        result_dtype=result_dtype,
        backend=backend,
        dtype=result_dtype,
        meta=meta,
    )


def _combined_scales(da, operands, axes, op, precision, temperature, backend):
    """Pass 1 and the combine: a dask array of the kept axes plus a trailing
    axis of 5 (the scale records of csoftmax.h)."""
    x = operands[0]
    ndim = x.ndim
    index = _index(ndim)
    chunks = tuple((1,) * len(x.chunks[i]) if i in axes else x.chunks[i] for i in range(ndim))
    partials = da.map_blocks(
        _chunk_partials,
        *operands,
        axes=axes,
        precision=precision,
        temperature=temperature,
        backend=backend,
        chunks=chunks + ((4,),),
        new_axis=ndim,
        dtype=np.float64,
        meta=np.empty((0,) * (ndim + 1), np.float64),
    )
    kept = tuple(index[i] for i in range(ndim) if i not in axes)
    return da.blockwise(
        _combine_chunks,
        kept + ("record",),
        partials,
        index + ("partial",),
        new_axes={"record": 5},
        concatenate=False,
        op=op,
        axes=axes,
        temperature=temperature,
        backend=backend,
        dtype=np.float64,
        meta=np.empty((0,) * (len(kept) + 1), np.float64),
    )


def _second_read(*arrays):
    """The arrays for pass 2: their graphs again under new keys (cloned together,
    so a shared source is read once more, not once per array), so that no chunk
    waits in memory for the combine.  REREAD = False keeps the first read."""
    if not REREAD:
        return arrays
    from dask.graph_manipulation import clone

    cloned = clone(*arrays)
    return cloned if len(arrays) > 1 else (cloned,)


def _index(ndim):
    return tuple(f"axis{i}" for i in range(ndim))


def _dask_array():
    try:
        import dask.array
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return dask.array


def _as_dask(da, x):
    return x if isinstance(x, da.Array) else da.asarray(x)


def _where_array(da, where, x):
    """`where` as a bool dask array of x's shape and chunks (None stays None)."""
    if where is None:
        return None
    mask = where if isinstance(where, da.Array) else np.asarray(where)
    if mask.dtype != np.bool_:
        raise TypeError(f"where must be an array of booleans, not of dtype {mask.dtype}")
    try:
        mask = da.broadcast_to(mask, x.shape)
    except ValueError:
        raise ValueError(
            f"where of shape {mask.shape} cannot be broadcast to the input's shape {x.shape}"
        ) from None
    return mask.rechunk(x.chunks)  # a mask, not the data: a no-op when chunked alike


def _dtypes(dtype):
    """(result dtype, whether the C/NumPy partial steps take it) for an input dtype."""
    compute, result, route = _api.dtypes(dtype)
    return result, route == "kernel"


def _require_kernel(kernel, dtype, axes):
    if not kernel:
        raise TypeError(
            f"csoftmax.dask reduces {dtype} arrays only within one chunk; "
            f"rechunk so that each of the axes {axes} is a single chunk"
        )


def _within_chunks(x, axes):
    return all(x.numblocks[i] == 1 for i in axes)


# As _native.pyx: temperatures the C kernels take; others run in NumPy.
_KERNEL_TEMPERATURES = (2.0**-60, 2.0**60)


def _backend(temperature):
    if _BACKEND is not None:
        return _BACKEND
    import csoftmax

    if not _KERNEL_TEMPERATURES[0] <= temperature <= _KERNEL_TEMPERATURES[1]:
        return "python"
    return csoftmax.backend


# --- the tasks (module-level functions: they pickle by reference) ------------


def _memory_functions(backend):
    if backend == "c":
        from csoftmax import _native

        return _native
    from csoftmax import _fallback

    return _fallback


def _steps(backend):
    if backend == "c":
        from csoftmax import _native

        return _native
    from csoftmax import _dask_partials

    return _dask_partials


def _normalized_block(block, where=None, *, op, axes, precision, temperature, backend):
    return getattr(_memory_functions(backend), op)(
        block, axis=axes, precision=precision, where=where, temperature=temperature
    )


def _logsumexp_block(block, where=None, *, axes, keepdims, backend):
    return np.asarray(
        _memory_functions(backend).logsumexp(block, axis=axes, keepdims=keepdims, where=where)
    )


def _signed_chunk(block, weights, where=None, *, axes, backend):
    """(logsumexp, sign) of a chunk along axes, in float64, as a trailing pair."""
    block, where = _api.split_mask(block, where)
    value, sign = _memory_functions(backend).logsumexp(
        block.astype(np.float64), axis=axes, b=weights, keepdims=True, return_sign=True, where=where
    )
    return np.stack([value, sign], axis=-1)


def _combine_signed(nested, axes, result_dtype, backend):
    """The signed logsumexp of the chunks' (logsumexp, sign) pairs, in chunk order."""
    parts = list(_leaves(nested))
    kept_shape = tuple(size for i, size in enumerate(parts[0].shape[:-1]) if i not in axes)
    pairs = np.stack([part.reshape(-1, 2) for part in parts])
    value, sign = _memory_functions(backend).logsumexp(
        pairs[..., 0], axis=0, b=pairs[..., 1], return_sign=True
    )
    with np.errstate(over="ignore", invalid="ignore"):
        pair = np.stack([value, sign], axis=-1).astype(result_dtype)
    return pair.reshape(kept_shape + (2,))


def _layout(block, where, axes):
    """`block` (a masked array's data) as a C-contiguous (outer, n, inner) array in
    its compute dtype, slices in the C order of the kept axes; the mask (None, or
    bools laid out alike) and the transpose used (or None)."""
    block, where = _api.split_mask(block, where)
    compute = _api.dtypes(block.dtype)[0]
    shape = block.shape
    if axes[-1] - axes[0] == len(axes) - 1:
        first, last = axes[0], axes[-1]
        layout_shape = (
            math.prod(shape[:first]),
            math.prod(shape[first : last + 1]),
            math.prod(shape[last + 1 :]),
        )
        order = None
    else:
        order = tuple(i for i in range(block.ndim) if i not in axes) + axes
        layout_shape = (
            math.prod(shape[i] for i in order[: block.ndim - len(axes)]),
            math.prod(shape[i] for i in axes),
            1,
        )
        block = block.transpose(order)
        where = None if where is None else np.asarray(where).transpose(order)
    x3 = np.ascontiguousarray(block, dtype=compute).reshape(layout_shape)
    w3 = (
        None if where is None else np.ascontiguousarray(where, dtype=np.bool_).reshape(layout_shape)
    )
    return x3, w3, order


def _chunk_partials(block, where=None, *, axes, precision, temperature, backend):
    x3, w3, _ = _layout(block, where, axes)
    partials = _steps(backend).chunk_partials(x3, precision, w3, temperature)
    return partials.reshape(
        tuple(1 if i in axes else size for i, size in enumerate(block.shape)) + (4,)
    )


def _leaves(nested):
    """The blocks of a blockwise(concatenate=False) argument, in chunk order."""
    if isinstance(nested, (list, tuple)):
        for item in nested:
            yield from _leaves(item)
    else:
        yield nested


def _combine_chunks(nested, op, axes, temperature, backend):
    parts = list(_leaves(nested))
    kept_shape = tuple(size for i, size in enumerate(parts[0].shape[:-1]) if i not in axes)
    partials = np.stack([part.reshape(-1, 4) for part in parts])
    scales = _steps(backend).combine_partials(op, partials, temperature)
    return scales.reshape(kept_shape + (5,))


def _normalize_chunk(
    block, scales, where=None, *, op, axes, precision, temperature, result_dtype, backend
):
    x3, w3, order = _layout(block, where, axes)
    y3 = _steps(backend).chunk_normalize(
        op, x3, np.ascontiguousarray(scales).reshape(-1, 5), precision, w3, temperature
    )
    if order is None:
        y = y3.reshape(block.shape)
    else:
        y = y3.reshape(tuple(block.shape[i] for i in order)).transpose(np.argsort(order))
    with np.errstate(over="ignore"):  # float16 results may overflow to inf
        return y.astype(result_dtype, copy=False)


def _logsumexp_from_scales(scales, result_dtype, backend):
    values = _steps(backend).logsumexp_from_scales(np.ascontiguousarray(scales).reshape(-1, 5))
    with np.errstate(over="ignore"):
        return values.astype(result_dtype).reshape(scales.shape[:-1])
