# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, freethreading_compatible=True
"""The C backend: a zero-overhead path for the common call, typed memoryviews
for everything `_api.plan` normalises, and the GIL released around every
kernel call.  No loop over elements lives here."""

import warnings

import numpy as np

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport strcpy

from csoftmax.csoftmax cimport (
    csm_operation, csm_precision, CSM_ERROR_NO_MEMORY, CSM_EXACT, CSM_FAST, CSM_ISA_COUNT, CSM_ISA_INIT_OK,
    CSM_ISA_INIT_UNKNOWN_NAME, CSM_LOG_SOFTMAX, CSM_LOGSUMEXP, CSM_OK, CSM_SOFTMAX,
    csm_get_isa, csm_get_num_threads, csm_init, csm_isa_available, csm_isa_from_name,
    csm_isa_name, csm_openmp_enabled, csm_options, csm_reduce_f32, csm_reduce_f64,
    csm_reduce_options_f32, csm_reduce_options_f64, csm_backward_f32, csm_backward_f64,
    csm_set_isa, csm_set_num_threads)

from csoftmax import _api, _fallback
from csoftmax import dask as _dask  # imports dask only when handed a dask array

cnp.import_array()

cdef extern from "output_buffers.h" nogil:
    enum:
        CSM_BUFFER_MIN_BYTES
        CSM_BUFFER_INIT_OK
    int csm_buffer_cache_init()
    void csm_buffer_cache_set_limit(size_t nbytes)
    size_t csm_buffer_cache_limit()
    void csm_buffer_cache_release()
    void *csm_buffer_malloc(void *ctx, size_t size)
    void *csm_buffer_calloc(void *ctx, size_t nelem, size_t elsize)
    void *csm_buffer_realloc(void *ctx, void *ptr, size_t new_size)
    void csm_buffer_free(void *ctx, void *ptr, size_t size)

# NEP 49 (NumPy >= 1.22).  numpy's own .pxd declares `name` as a char *, not
# the char[127] the header has, so these are declared here.
cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void *ctx
        void *(*malloc)(void *ctx, size_t size) noexcept nogil
        void *(*calloc)(void *ctx, size_t nelem, size_t elsize) noexcept nogil
        void *(*realloc)(void *ctx, void *ptr, size_t new_size) noexcept nogil
        void (*free)(void *ctx, void *ptr, size_t size) noexcept nogil

    ctypedef struct PyDataMem_Handler:
        char name[127]
        uint8_t version
        PyDataMemAllocator allocator

    object PyDataMem_SetHandler(object handler)

cdef enum:
    MAX_FAST_DIMS = 32

cdef object _OPERATION_NAMES = ("softmax", "log_softmax", "logsumexp")
# The kernels scale by 1/T in the element dtype; beyond these bounds 1/T or its
# products leave float32's range, so such (rare) temperatures run in NumPy.
cdef object _KERNEL_TEMPERATURES = (2.0 ** -60, 2.0 ** 60)


def _initialise():
    import os
    if csm_buffer_cache_init() != CSM_BUFFER_INIT_OK:
        requested = os.environ.get("CSOFTMAX_BUFFER_CACHE_MB")
        warnings.warn(f"CSOFTMAX_BUFFER_CACHE_MB={requested!r} is not a whole number of MiB; "
                      f"using {csm_buffer_cache_limit() >> 20} MiB", RuntimeWarning, stacklevel=3)
    status = csm_init()
    if status == CSM_ISA_INIT_OK:
        return
    requested = os.environ.get("CSOFTMAX_ISA", "")
    chosen = csm_isa_name(csm_get_isa()).decode()
    if status == CSM_ISA_INIT_UNKNOWN_NAME:
        reason = "is not one of " + ", ".join(
            csm_isa_name(i).decode() for i in range(CSM_ISA_COUNT))
    else:
        reason = "is not available on this CPU or build"
    warnings.warn(f"CSOFTMAX_ISA={requested!r} {reason}; using {chosen!r}",
                  RuntimeWarning, stacklevel=3)


_initialise()


# Large outputs come from the output buffer cache (src_c/output_buffers.h):
# their pages are reused rather than faulted in afresh, 64-byte aligned.
cdef PyDataMem_Handler _output_handler
strcpy(_output_handler.name, b"csoftmax_output_buffers")
_output_handler.version = 1
_output_handler.allocator.ctx = NULL
_output_handler.allocator.malloc = csm_buffer_malloc
_output_handler.allocator.calloc = csm_buffer_calloc
_output_handler.allocator.realloc = csm_buffer_realloc
_output_handler.allocator.free = csm_buffer_free
# Every array allocated through it holds a reference to this capsule.
cdef object _OUTPUT_HANDLER = PyCapsule_New(&_output_handler, "mem_handler", NULL)


cdef cnp.ndarray _new_output(int ndim, cnp.npy_intp *shape, int type_number, Py_ssize_t nbytes):
    """A fresh C-ordered array of `nbytes`, from the buffer cache when that is large."""
    if nbytes < <Py_ssize_t> CSM_BUFFER_MIN_BYTES:
        return cnp.PyArray_EMPTY(ndim, shape, type_number, 0)
    previous = PyDataMem_SetHandler(_OUTPUT_HANDLER)  # per thread (a context variable)
    try:
        return cnp.PyArray_EMPTY(ndim, shape, type_number, 0)
    finally:
        PyDataMem_SetHandler(previous)


def _empty_output(shape3, dtype):
    """np.empty(shape3, dtype) for a plan's (outer, n, inner) result, by _new_output."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = shape3
    dtype = np.dtype(dtype)
    return _new_output(3, dims, dtype.num, dims[0] * dims[1] * dims[2] * dtype.itemsize)


def set_buffer_cache_limit(nbytes):
    """Cap the bytes the output buffer cache keeps (0: no caching); releases what exceeds it."""
    if nbytes < 0:
        raise ValueError(f"the buffer cache limit must be >= 0, not {nbytes}")
    csm_buffer_cache_set_limit(nbytes)


def get_buffer_cache_limit():
    return csm_buffer_cache_limit()


def release_buffer_cache():
    """Free every cached output block."""
    csm_buffer_cache_release()


cdef int _precision_code(object precision) except -1:
    if precision == "exact":
        return CSM_EXACT
    if precision == "fast":
        return CSM_FAST
    raise ValueError(f"precision must be 'exact' or 'fast', not {precision!r}")


cdef int _raise_status(int status) except -1:
    if status == CSM_ERROR_NO_MEMORY:
        raise MemoryError("csoftmax: out of memory for the partial sums of long rows")
    raise RuntimeError(f"csoftmax kernel failed with status {status}")


cdef inline bint _overlap(cnp.ndarray a, cnp.ndarray b):
    cdef char *a_start = <char *> cnp.PyArray_DATA(a)
    cdef char *b_start = <char *> cnp.PyArray_DATA(b)
    return (a_start < b_start + cnp.PyArray_NBYTES(b)) and (b_start < a_start + cnp.PyArray_NBYTES(a))


cdef int _run(int operation, int precision, int type_number, const void *x, void *y,
              int64_t outer, int64_t n, int64_t inner, const uint8_t *where=NULL,
              double temperature=1.0) except -1:
    cdef int status
    cdef csm_options options
    options.where = where
    options.temperature = temperature
    options.max_threads = 0
    with nogil:
        if type_number == cnp.NPY_FLOAT32:
            status = csm_reduce_options_f32(<csm_operation> operation, <csm_precision> precision,
                                            <const float *> x, <float *> y, outer, n, inner,
                                            &options)
        else:
            status = csm_reduce_options_f64(<csm_operation> operation, <csm_precision> precision,
                                            <const double *> x, <double *> y, outer, n, inner,
                                            &options)
    if status != CSM_OK:
        _raise_status(status)
    return 0


cdef inline bint _plain_float_array(object x):
    """An exact ndarray of native, aligned, C-contiguous float32/float64 with elements."""
    if not cnp.PyArray_CheckExact(x):
        return False
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int type_number = cnp.PyArray_TYPE(a)
    return ((type_number == cnp.NPY_FLOAT32 or type_number == cnp.NPY_FLOAT64)
            and cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a)
            and cnp.PyArray_NDIM(a) >= 1 and cnp.PyArray_NDIM(a) <= MAX_FAST_DIMS
            and cnp.PyArray_SIZE(a) > 0)


cdef object _fast_path(int operation, object x, object axis, object out, int precision):
    """The common call without any Python-level work; None when it does not apply."""
    if not _plain_float_array(x):
        return None
    cdef cnp.ndarray a = <cnp.ndarray> x
    cdef int ndim = cnp.PyArray_NDIM(a)
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef int type_number = cnp.PyArray_TYPE(a)
    cdef Py_ssize_t reduced
    cdef int64_t outer = 1, n, inner = 1
    cdef int k
    cdef cnp.npy_intp result_shape[MAX_FAST_DIMS]
    cdef cnp.ndarray result
    if axis is None:
        n = cnp.PyArray_SIZE(a)
        reduced = -1
    elif type(axis) is int:
        reduced = axis
        if reduced < 0:
            reduced += ndim
        if reduced < 0 or reduced >= ndim:
            return None  # the general path raises the AxisError
        n = shape[reduced]
        for k in range(reduced):
            outer *= shape[k]
        for k in range(reduced + 1, ndim):
            inner *= shape[k]
    else:
        return None

    if operation == CSM_LOGSUMEXP:
        if out is not None:
            return None
        for k in range(ndim):
            result_shape[k] = shape[k]
        if reduced < 0:
            ndim = 0
        else:
            for k in range(reduced, ndim - 1):
                result_shape[k] = shape[k + 1]
            ndim -= 1
        result = cnp.PyArray_EMPTY(ndim, result_shape, type_number, 0)
        _run(operation, precision, type_number, cnp.PyArray_DATA(a), cnp.PyArray_DATA(result),
             outer, n, inner)
        return result[()] if ndim == 0 else result  # scipy returns a scalar for 0-d

    if out is None:
        result = _new_output(ndim, shape, type_number, cnp.PyArray_NBYTES(a))
    else:
        if not cnp.PyArray_CheckExact(out):
            return None
        result = <cnp.ndarray> out
        if (cnp.PyArray_TYPE(result) != type_number or not cnp.PyArray_ISCARRAY(result)
                or not cnp.PyArray_ISNOTSWAPPED(result) or cnp.PyArray_NDIM(result) != ndim):
            return None
        for k in range(ndim):
            if cnp.PyArray_DIMS(result)[k] != shape[k]:
                return None
        # in place is fine; any other overlap goes through the general path's copy
        if result is not a and _overlap(result, a):
            return None
    _run(operation, precision, type_number, cnp.PyArray_DATA(a), cnp.PyArray_DATA(result),
         outer, n, inner)
    return result


cdef int reduce_f32(int operation, int precision, const float *x, float *y,
                    int64_t outer, int64_t n, int64_t inner) noexcept nogil:
    return csm_reduce_f32(<csm_operation> operation, <csm_precision> precision, x, y, outer, n, inner)


cdef int reduce_f64(int operation, int precision, const double *x, double *y,
                    int64_t outer, int64_t n, int64_t inner) noexcept nogil:
    return csm_reduce_f64(<csm_operation> operation, <csm_precision> precision, x, y, outer, n, inner)


cdef inline const uint8_t *_mask_data(const uint8_t[::1] mask) noexcept:
    """The bytes of a plan's mask (a C-contiguous bool array viewed as uint8); NULL for none."""
    if mask is None or mask.shape[0] == 0:
        return NULL
    return &mask[0]


def _compute3(operation_name, x3, y3, precision, w3=None, temperature=1.0):
    """Fills y3 from the normalised (outer, n, inner) x3 (and mask w3) with the C kernel."""
    cdef int operation = _OPERATION_NAMES.index(operation_name)
    cdef int precision_code = _precision_code(precision)
    cdef int64_t outer = x3.shape[0], n = x3.shape[1], inner = x3.shape[2]
    if x3.size == 0 or y3.size == 0:
        return
    cdef const uint8_t[::1] mask = None if w3 is None else w3.reshape(-1).view(np.uint8)
    cdef const uint8_t *where_pointer = _mask_data(mask)
    cdef const float[::1] x_f32
    cdef float[::1] y_f32
    cdef const double[::1] x_f64
    cdef double[::1] y_f64
    if x3.dtype == np.float32:
        x_f32 = x3.reshape(-1)
        y_f32 = y3.reshape(-1)
        _run(operation, precision_code, cnp.NPY_FLOAT32, &x_f32[0], &y_f32[0], outer, n, inner,
             where_pointer, temperature)
    else:
        x_f64 = x3.reshape(-1)
        y_f64 = y3.reshape(-1)
        _run(operation, precision_code, cnp.NPY_FLOAT64, &x_f64[0], &y_f64[0], outer, n, inner,
             where_pointer, temperature)


def _backward3(operation_name, g3, s3, y3, w3=None):
    """Fills y3 with the vector-Jacobian product of g3 for the forward output s3 (C kernel)."""
    cdef int operation = CSM_SOFTMAX if operation_name == "softmax_backward" else CSM_LOG_SOFTMAX
    cdef int64_t outer = s3.shape[0], n = s3.shape[1], inner = s3.shape[2]
    if s3.size == 0:
        return
    cdef const uint8_t[::1] mask = None if w3 is None else w3.reshape(-1).view(np.uint8)
    cdef const uint8_t *where_pointer = _mask_data(mask)
    cdef const float[::1] g_f32, s_f32
    cdef float[::1] y_f32
    cdef const double[::1] g_f64, s_f64
    cdef double[::1] y_f64
    cdef int status
    if s3.dtype == np.float32:
        g_f32 = g3.reshape(-1)
        s_f32 = s3.reshape(-1)
        y_f32 = y3.reshape(-1)
        with nogil:
            status = csm_backward_f32(<csm_operation> operation, &g_f32[0], &s_f32[0], where_pointer,
                                      &y_f32[0], outer, n, inner, 0)
    else:
        g_f64 = g3.reshape(-1)
        s_f64 = s3.reshape(-1)
        y_f64 = y3.reshape(-1)
        with nogil:
            status = csm_backward_f64(<csm_operation> operation, &g_f64[0], &s_f64[0], where_pointer,
                                      &y_f64[0], outer, n, inner, 0)
    if status != CSM_OK:
        _raise_status(status)


cdef object _reduce(int operation, object x, object axis, object out, object precision,
                    bint keepdims=False, object where=None, object temperature=1.0,
                    object dtype=None):
    cdef int precision_code = _precision_code(precision)
    cdef object result
    if not keepdims and where is None and dtype is None and (
            type(temperature) is float or type(temperature) is int) and temperature == 1:
        result = _fast_path(operation, x, axis, out, precision_code)
        if result is not None:
            return result
    name = _OPERATION_NAMES[operation]
    if _dask.is_dask_array(x):
        if operation == CSM_LOGSUMEXP:
            return _dask.logsumexp(x, axis, keepdims=keepdims, where=where)
        return getattr(_dask, name)(x, axis, out=out, where=where, temperature=temperature,
                                    dtype=dtype, precision=precision)
    plan = _api.plan(name, x, axis, out, precision, keepdims=keepdims, where=where,
                     temperature=temperature, dtype=dtype, empty=_empty_output)
    if plan.route == "kernel" and _KERNEL_TEMPERATURES[0] <= plan.temperature <= _KERNEL_TEMPERATURES[1]:
        _compute3(name, plan.x3, plan.y3, plan.precision, plan.w3, plan.temperature)
    elif plan.route != "done":
        _fallback.compute3(name, plan.x3, plan.y3, plan.precision, plan.w3, plan.temperature)
    return plan.finish()


def softmax(x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None,
            precision="exact"):
    """Softmax along `axis` (None: the whole array); see csoftmax.softmax."""
    return _reduce(CSM_SOFTMAX, x, axis, out, precision, False, where, temperature, dtype)


def log_softmax(x, axis=None, *, out=None, where=None, temperature=1.0, dtype=None,
                precision="exact"):
    """Log-softmax along `axis`; see csoftmax.log_softmax."""
    return _reduce(CSM_LOG_SOFTMAX, x, axis, out, precision, False, where, temperature, dtype)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, where=None):
    """log(sum(exp(a))) along `axis`; `b` and `return_sign` take the NumPy path."""
    if b is not None or return_sign:
        if _dask.is_dask_array(a):
            return _dask.logsumexp(a, axis, b, keepdims, return_sign, where=where)
        return _fallback.logsumexp(a, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign,
                                   where=where)
    return _reduce(CSM_LOGSUMEXP, a, axis, None, "exact", keepdims, where)


cdef object _backward(object name, object grad, object y, object axis, object out, object where):
    plan = _api.plan_backward(name, grad, y, axis, out, where, _empty_output)
    if plan.route == "kernel":
        _backward3(name, plan.g3, plan.x3, plan.y3, plan.w3)
    elif plan.route == "numpy":
        _fallback.backward3(name, plan.g3, plan.x3, plan.y3, plan.w3)
    return plan.finish()


def softmax_backward(grad, y, axis=None, *, out=None, where=None):
    """The vector-Jacobian product of softmax given its output y; see csoftmax.softmax_backward."""
    return _backward("softmax_backward", grad, y, axis, out, where)


def log_softmax_backward(grad, y, axis=None, *, out=None, where=None):
    """The vector-Jacobian product of log_softmax given its output y."""
    return _backward("log_softmax_backward", grad, y, axis, out, where)


def get_num_threads():
    """Threads a call may use: set_num_threads' value, else OpenMP's default."""
    return csm_get_num_threads()


def set_num_threads(n):
    """Use at most n (>= 1) threads in csoftmax calls."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads expects an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads expects n >= 1, not {n}")
    csm_set_num_threads(<int> min(int(n), 1 << 20))


def openmp_enabled():
    return bool(csm_openmp_enabled())


def available_isas():
    """The ISAs usable here, best last."""
    return [csm_isa_name(i).decode() for i in range(CSM_ISA_COUNT) if csm_isa_available(i)]


def get_isa():
    return csm_isa_name(csm_get_isa()).decode()


def set_isa(name):
    """Switch the kernel in use (tests force each ISA this way)."""
    cdef int isa = csm_isa_from_name(str(name).encode())
    if isa < 0 or csm_set_isa(isa) != CSM_OK:
        raise ValueError(f"ISA {name!r} is not available here; available: {available_isas()}")


# -- csoftmax.dask: the three steps of a reduction whose axis is cut into parts
# (csoftmax.h, "Partials across parts").  csoftmax/_dask_partials.py is the
# NumPy twin with the same functions; csoftmax/dask.py lays the chunks out.
# x3: a C-contiguous (outer, n, inner) float32/float64 array; w3: None or a
# C-contiguous bool mask of x3's shape; temperature: a positive finite float.

from csoftmax.csoftmax cimport (
    CSM_ERROR_BAD_ARGUMENT, CSM_PARTIAL_DOUBLES, CSM_SCALE_DOUBLES, csm_combine_partials, csm_logsumexp_from_scales,
    csm_normalize_f32, csm_normalize_f64, csm_partials_f32, csm_partials_f64)


cdef inline const float *_f32_data(const float[::1] view) noexcept nogil:
    return &view[0] if view.shape[0] else NULL


cdef inline const double *_f64_data(const double[::1] view) noexcept nogil:
    return &view[0] if view.shape[0] else NULL


cdef int _check_status(int status) except -1:
    if status == CSM_ERROR_BAD_ARGUMENT:
        raise ValueError("csoftmax: bad argument to a partials step (temperature must be positive and finite)")
    if status != CSM_OK:
        _raise_status(status)
    return 0


def chunk_partials(x3, precision, w3=None, double temperature=1.0):
    """The (outer, inner, 4) float64 partial records of x3's slices."""
    cdef int precision_code = _precision_code(precision)
    cdef int64_t outer = x3.shape[0], n = x3.shape[1], inner = x3.shape[2]
    partials = np.empty((outer, inner, CSM_PARTIAL_DOUBLES), np.float64)
    cdef double[::1] records = partials.reshape(-1)
    cdef const uint8_t[::1] mask = None if w3 is None else w3.reshape(-1).view(np.uint8)
    cdef const uint8_t *mask_pointer = _mask_data(mask)
    cdef const float[::1] x_f32
    cdef const double[::1] x_f64
    cdef int status
    if records.shape[0] == 0:
        return partials
    if x3.dtype == np.float32:
        x_f32 = x3.reshape(-1)
        with nogil:
            status = csm_partials_f32(<csm_precision> precision_code, _f32_data(x_f32), mask_pointer, outer, n,
                                      inner, temperature, &records[0])
    else:
        x_f64 = x3.reshape(-1)
        with nogil:
            status = csm_partials_f64(<csm_precision> precision_code, _f64_data(x_f64), mask_pointer, outer, n,
                                      inner, temperature, &records[0])
    _check_status(status)
    return partials


def combine_partials(operation_name, partials, double temperature=1.0):
    """Scale records (slices, 5) from the C-contiguous (parts, slices, 4) partial records."""
    cdef int operation = _OPERATION_NAMES.index(operation_name)
    cdef int64_t parts = partials.shape[0], slices = partials.shape[1]
    scales = np.empty((slices, CSM_SCALE_DOUBLES), np.float64)
    cdef const double[::1] records = partials.reshape(-1)
    cdef double[::1] scale_records = scales.reshape(-1)
    cdef int status
    if scale_records.shape[0] == 0:
        return scales
    with nogil:
        status = csm_combine_partials(<csm_operation> operation, _f64_data(records), parts, slices, temperature,
                                      &scale_records[0])
    _check_status(status)
    return scales


def chunk_normalize(operation_name, x3, scales, precision, w3=None, double temperature=1.0):
    """softmax / log_softmax of x3 (a new array) from its slices' (outer * inner, 5) scale records."""
    cdef int operation = _OPERATION_NAMES.index(operation_name)
    cdef int precision_code = _precision_code(precision)
    cdef int64_t outer = x3.shape[0], n = x3.shape[1], inner = x3.shape[2]
    y3 = np.empty(x3.shape, x3.dtype)
    if y3.size == 0:
        return y3
    cdef const double[::1] scale_records = scales.reshape(-1)
    cdef const uint8_t[::1] mask = None if w3 is None else w3.reshape(-1).view(np.uint8)
    cdef const uint8_t *mask_pointer = _mask_data(mask)
    cdef const float[::1] x_f32
    cdef float[::1] y_f32
    cdef const double[::1] x_f64
    cdef double[::1] y_f64
    cdef int status
    if x3.dtype == np.float32:
        x_f32 = x3.reshape(-1)
        y_f32 = y3.reshape(-1)
        with nogil:
            status = csm_normalize_f32(<csm_operation> operation, <csm_precision> precision_code, &x_f32[0],
                                       mask_pointer, &y_f32[0], outer, n, inner, temperature, &scale_records[0])
    else:
        x_f64 = x3.reshape(-1)
        y_f64 = y3.reshape(-1)
        with nogil:
            status = csm_normalize_f64(<csm_operation> operation, <csm_precision> precision_code, &x_f64[0],
                                       mask_pointer, &y_f64[0], outer, n, inner, temperature, &scale_records[0])
    _check_status(status)
    return y3


def logsumexp_from_scales(scales):
    """float64 logsumexp of each slice from its (slices, 5) scale records."""
    cdef int64_t slices = scales.shape[0]
    values = np.empty(slices, np.float64)
    cdef const double[::1] scale_records = scales.reshape(-1)
    cdef double[::1] value_view = values
    cdef int status
    if slices == 0:
        return values
    with nogil:
        status = csm_logsumexp_from_scales(&scale_records[0], slices, &value_view[0])
    _check_status(status)
    return values


# -- Cross-entropy and segment softmax (csoftmax/_cross_entropy.py, csoftmax/_segments.py) --------

from csoftmax.csoftmax cimport (
    CSM_REDUCTION_MEAN, CSM_REDUCTION_NONE, CSM_REDUCTION_SUM, csm_loss_reduction, csm_cross_entropy_f32,
    csm_cross_entropy_f64, csm_cross_entropy_options, csm_segment_reduce_f32,
    csm_segment_reduce_f64)

from csoftmax import _cross_entropy, _segments

cdef object _REDUCTION_CODES = {
    "none": CSM_REDUCTION_NONE, "sum": CSM_REDUCTION_SUM, "mean": CSM_REDUCTION_MEAN}


cdef inline void *_data_or_null(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray> a)


def cross_entropy(logits, target, axis=-1, *, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, return_grad=False):
    """PyTorch's cross_entropy from logits along `axis`, fused on the kernel; see
    csoftmax.cross_entropy."""
    p = _cross_entropy.prepare(logits, target, axis, weight, ignore_index, reduction,
                               label_smoothing)
    if p.route != "kernel":
        return p.finish(*_cross_entropy.compute_numpy(p, return_grad))
    cdef cnp.ndarray x3 = p.x3
    cdef int64_t outer = x3.shape[0], n = x3.shape[1], inner = x3.shape[2]
    cdef cnp.ndarray losses = np.empty((outer, inner), np.float64)
    grad3 = np.empty_like(x3) if return_grad else None
    cdef csm_cross_entropy_options options
    options.target = <const int64_t *> _data_or_null(p.target)
    options.weight = <const double *> _data_or_null(p.weight)
    options.ignore_index = p.ignore_index
    options.label_smoothing = p.label_smoothing
    options.reduction = <csm_loss_reduction> <int> _REDUCTION_CODES[p.reduction]
    cdef const void *x = cnp.PyArray_DATA(x3)
    cdef const void *probability = _data_or_null(p.probability)
    cdef void *grad = _data_or_null(grad3)
    cdef double *losses_data = <double *> cnp.PyArray_DATA(losses)
    cdef double loss = 0.0
    cdef bint single = cnp.PyArray_TYPE(x3) == cnp.NPY_FLOAT32
    cdef int status
    with nogil:
        if single:
            status = csm_cross_entropy_f32(<const float *> x, <const float *> probability, outer,
                                           n, inner, &options, losses_data, &loss, <float *> grad)
        else:
            status = csm_cross_entropy_f64(<const double *> x, <const double *> probability,
                                           outer, n, inner, &options, losses_data, &loss,
                                           <double *> grad)
    if status != CSM_OK:
        _raise_status(status)
    return p.finish(losses, loss, grad3)


cdef object _segment(int operation, object x, object indptr, object out, object precision):
    p = _segments.plan(_OPERATION_NAMES[operation], x, indptr, out, precision)
    if p.route == "numpy":
        _segments.compute_numpy(p)
    if p.route != "kernel":
        return p.finish()
    cdef cnp.ndarray x2 = p.x2, y2 = p.y2, offsets = p.indptr
    cdef int precision_code = _precision_code(precision)
    cdef const void *x_data = cnp.PyArray_DATA(x2)
    cdef void *y_data = cnp.PyArray_DATA(y2)
    cdef const int64_t *indptr_data = <const int64_t *> cnp.PyArray_DATA(offsets)
    cdef int64_t segments = offsets.shape[0] - 1, inner = x2.shape[1]
    cdef bint single = cnp.PyArray_TYPE(x2) == cnp.NPY_FLOAT32
    cdef int status
    with nogil:
        if single:
            status = csm_segment_reduce_f32(<csm_operation> operation,
                                            <csm_precision> precision_code, <const float *> x_data,
                                            <float *> y_data, indptr_data, segments, inner)
        else:
            status = csm_segment_reduce_f64(<csm_operation> operation,
                                            <csm_precision> precision_code,
                                            <const double *> x_data, <double *> y_data,
                                            indptr_data, segments, inner)
    if status != CSM_OK:
        _raise_status(status)
    return p.finish()


def segment_softmax(x, indptr, *, out=None, precision="exact"):
    """Softmax of every CSR segment of x's rows; see csoftmax.segment_softmax."""
    return _segment(CSM_SOFTMAX, x, indptr, out, precision)


def segment_log_softmax(x, indptr, *, out=None, precision="exact"):
    """Log-softmax of every CSR segment of x's rows; see csoftmax.segment_log_softmax."""
    return _segment(CSM_LOG_SOFTMAX, x, indptr, out, precision)


def segment_logsumexp(x, indptr):
    """logsumexp of every CSR segment of x's rows; see csoftmax.segment_logsumexp."""
    return _segment(CSM_LOGSUMEXP, x, indptr, None, "exact")


# One documentation for both backends: the NumPy implementations' docstrings.
cross_entropy.__doc__ = _cross_entropy.cross_entropy.__doc__
segment_softmax.__doc__ = _segments.segment_softmax.__doc__
segment_log_softmax.__doc__ = _segments.segment_log_softmax.__doc__
segment_logsumexp.__doc__ = _segments.segment_logsumexp.__doc__
