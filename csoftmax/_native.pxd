# The kernels for other Cython code, with no linking against csoftmax:
#     from csoftmax._native cimport reduce_f64
#     from csoftmax.csoftmax cimport CSM_SOFTMAX, CSM_EXACT   # constants (needs csoftmax.get_include())
#     with nogil:
#         status = reduce_f64(CSM_SOFTMAX, CSM_EXACT, &x[0, 0], &y[0, 0], rows, columns, 1)
# Arguments as csm_reduce_f32/f64 in csoftmax.h: reduce along n of a C-contiguous
# (outer, n, inner) array; y may be x; returns 0 or a CSM_ERROR_* code.
from libc.stdint cimport int64_t

cdef int reduce_f32(int operation, int precision, const float *x, float *y,
                    int64_t outer, int64_t n, int64_t inner) noexcept nogil
cdef int reduce_f64(int operation, int precision, const double *x, double *y,
                    int64_t outer, int64_t n, int64_t inner) noexcept nogil
