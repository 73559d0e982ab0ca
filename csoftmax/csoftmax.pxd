# Declarations of the csoftmax C API (src_c/csoftmax.h) for other Cython code:
#     from csoftmax.csoftmax cimport csm_reduce_f64, CSM_SOFTMAX, CSM_EXACT
# Every function is nogil and never touches Python objects.
from libc.stdint cimport int64_t, uint8_t


cdef extern from "csoftmax.h" nogil:
    ctypedef enum csm_operation:
        CSM_SOFTMAX
        CSM_LOG_SOFTMAX
        CSM_LOGSUMEXP

    ctypedef enum csm_precision:
        CSM_EXACT
        CSM_FAST

    ctypedef enum csm_isa:
        CSM_ISA_SCALAR
        CSM_ISA_AVX2
        CSM_ISA_AVX512
        CSM_ISA_NEON
        CSM_ISA_COUNT

    enum:
        CSM_OK
        CSM_ERROR_NO_MEMORY
        CSM_ERROR_BAD_ARGUMENT
        CSM_ISA_INIT_OK
        CSM_ISA_INIT_UNKNOWN_NAME
        CSM_ISA_INIT_UNAVAILABLE

    int csm_reduce_f32(csm_operation operation, csm_precision precision, const float *x, float *y,
                       int64_t outer, int64_t n, int64_t inner)
    int csm_reduce_f64(csm_operation operation, csm_precision precision, const double *x, double *y,
                       int64_t outer, int64_t n, int64_t inner)

    ctypedef struct csm_options:
        const uint8_t *where
        double temperature
        int max_threads

    int csm_reduce_options_f32(csm_operation operation, csm_precision precision, const float *x,
                               float *y, int64_t outer, int64_t n, int64_t inner,
                               const csm_options *options)
    int csm_reduce_options_f64(csm_operation operation, csm_precision precision, const double *x,
                               double *y, int64_t outer, int64_t n, int64_t inner,
                               const csm_options *options)

    int csm_backward_f32(csm_operation operation, const float *grad, const float *s,
                         const uint8_t *where, float *out, int64_t outer, int64_t n, int64_t inner,
                         int max_threads)
    int csm_backward_f64(csm_operation operation, const double *grad, const double *s,
                         const uint8_t *where, double *out, int64_t outer, int64_t n, int64_t inner,
                         int max_threads)

    int csm_get_num_threads()
    void csm_set_num_threads(int n)
    int csm_openmp_enabled()

    int csm_init()
    const char *csm_isa_name(int isa)
    int csm_isa_from_name(const char *name)
    int csm_isa_available(int isa)
    int csm_get_isa()
    int csm_set_isa(int isa)

    # ---- Partials across parts (csoftmax.dask); see csoftmax.h -------------
    enum:
        CSM_PARTIAL_DOUBLES
        CSM_SCALE_DOUBLES

    int csm_partials_f32(csm_precision precision, const float *x, const uint8_t *where, int64_t outer,
                         int64_t n, int64_t inner, double temperature, double *partials)
    int csm_partials_f64(csm_precision precision, const double *x, const uint8_t *where, int64_t outer,
                         int64_t n, int64_t inner, double temperature, double *partials)
    int csm_combine_partials(csm_operation operation, const double *partials, int64_t parts, int64_t slices,
                             double temperature, double *scales)
    int csm_normalize_f32(csm_operation operation, csm_precision precision, const float *x, const uint8_t *where,
                          float *y, int64_t outer, int64_t n, int64_t inner, double temperature,
                          const double *scales)
    int csm_normalize_f64(csm_operation operation, csm_precision precision, const double *x, const uint8_t *where,
                          double *y, int64_t outer, int64_t n, int64_t inner, double temperature,
                          const double *scales)
    int csm_logsumexp_from_scales(const double *scales, int64_t slices, double *values)


# -- Cross-entropy and segment softmax (cross_entropy.c, segments.c) ------------------------------
cdef extern from "csoftmax.h" nogil:
    ctypedef enum csm_loss_reduction:
        CSM_REDUCTION_NONE
        CSM_REDUCTION_SUM
        CSM_REDUCTION_MEAN

    ctypedef struct csm_cross_entropy_options:
        const int64_t *target
        const double *weight
        int64_t ignore_index
        double label_smoothing
        csm_loss_reduction reduction

    int csm_cross_entropy_f32(const float *x, const float *probability, int64_t outer, int64_t n,
                              int64_t inner, const csm_cross_entropy_options *options,
                              double *losses, double *loss, float *grad)
    int csm_cross_entropy_f64(const double *x, const double *probability, int64_t outer, int64_t n,
                              int64_t inner, const csm_cross_entropy_options *options,
                              double *losses, double *loss, double *grad)

    int csm_segment_reduce_f32(csm_operation operation, csm_precision precision, const float *x,
                               float *y, const int64_t *indptr, int64_t segments, int64_t inner)
    int csm_segment_reduce_f64(csm_operation operation, csm_precision precision, const double *x,
                               double *y, const int64_t *indptr, int64_t segments, int64_t inner)
