/* csoftmax C API: numerically exact, multithreaded softmax / log_softmax /
 * logsumexp over the middle axis of a C-contiguous (outer, n, inner) array.
 * This header is what the Cython layer and C embedders include; it never
 * mentions Python. */
#ifndef CSOFTMAX_H
#define CSOFTMAX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CSM_SOFTMAX = 0,
    CSM_LOG_SOFTMAX = 1,
    CSM_LOGSUMEXP = 2
} csm_operation;

typedef enum {
    CSM_EXACT = 0, /* <= 4 ULP for any spread of logits (the default) */
    CSM_FAST = 1   /* classical algorithm: x - max rounded once */
} csm_precision;

typedef enum {
    CSM_ISA_SCALAR = 0,
    CSM_ISA_AVX2 = 1,
    CSM_ISA_AVX512 = 2,
    CSM_ISA_NEON = 3,
    CSM_ISA_COUNT = 4
} csm_isa;

enum {
    CSM_OK = 0,
    CSM_ERROR_NO_MEMORY = 1,
    CSM_ERROR_BAD_ARGUMENT = 2
};

/* Reduce along n of the C-contiguous (outer, n, inner) array x.
 * softmax / log_softmax: y has x's shape.  logsumexp: y is (outer, inner).
 * y may be x itself (in place); any other overlap is undefined.
 * Results are bitwise identical for every thread count.
 * Returns CSM_OK or a CSM_ERROR_* code. */
int csm_reduce_f32(csm_operation operation, csm_precision precision, const float *x, float *y, int64_t outer, int64_t n,
                   int64_t inner);
int csm_reduce_f64(csm_operation operation, csm_precision precision, const double *x, double *y, int64_t outer,
                   int64_t n, int64_t inner);

/* The same with options: an element mask, a temperature and a thread cap.
 * where: NULL, or a 0/1 byte mask laid out like x; excluded elements are left
 * out of every max and sum and give 0 (softmax) / -inf (log_softmax); a
 * slice with nothing included gives all 0 / -inf (logsumexp: -inf).
 * temperature: > 0 and finite; the result is softmax / log_softmax of the
 * exact x / temperature (logsumexp takes only 1).
 * max_threads: 0 for csm_get_num_threads(); the bits never depend on it. */
typedef struct {
    const uint8_t *where;
    double temperature;
    int max_threads;
} csm_options;

#define CSM_DEFAULT_OPTIONS {NULL, 1.0, 0}

int csm_reduce_options_f32(csm_operation operation, csm_precision precision, const float *x, float *y, int64_t outer,
                           int64_t n, int64_t inner, const csm_options *options);
int csm_reduce_options_f64(csm_operation operation, csm_precision precision, const double *x, double *y, int64_t outer,
                           int64_t n, int64_t inner, const csm_options *options);

/* Gradients given the forward output s (all arrays (outer, n, inner),
 * C-contiguous; out may be grad or s itself): operation CSM_SOFTMAX gives
 * softmax's vector-Jacobian product s * (grad - sum(grad * s)), and
 * CSM_LOG_SOFTMAX log_softmax's grad - exp(s) * sum(grad), for s the
 * log_softmax output.  where: NULL or a mask as above (excluded outputs are
 * 0 and stay out of the sums).  max_threads as in csm_options. */
int csm_backward_f32(csm_operation operation, const float *grad, const float *s, const uint8_t *where, float *out,
                     int64_t outer, int64_t n, int64_t inner, int max_threads);
int csm_backward_f64(csm_operation operation, const double *grad, const double *s, const uint8_t *where, double *out,
                     int64_t outer, int64_t n, int64_t inner, int max_threads);

/* Threads: the override set by csm_set_num_threads, else omp_get_max_threads()
 * of the calling thread (so OMP_NUM_THREADS and threadpoolctl apply). */
int csm_get_num_threads(void);
/* n >= 1 overrides; n == 0 restores the OpenMP default. */
void csm_set_num_threads(int n);
int csm_openmp_enabled(void);

/* Kernel selection.  csm_init() picks the best ISA this CPU supports, capped
 * by the CSOFTMAX_ISA environment variable; it returns CSM_ISA_INIT_* so the
 * caller can warn about a bad value.  Safe to call more than once. */
enum {
    CSM_ISA_INIT_OK = 0,
    CSM_ISA_INIT_UNKNOWN_NAME = 1, /* CSOFTMAX_ISA names no ISA */
    CSM_ISA_INIT_UNAVAILABLE = 2   /* named ISA not usable here: best one used */
};
int csm_init(void);
const char *csm_isa_name(int isa);
int csm_isa_from_name(const char *name); /* -1 if unknown */
int csm_isa_available(int isa);          /* compiled in and supported by this CPU */
int csm_get_isa(void);
int csm_set_isa(int isa); /* CSM_OK, or CSM_ERROR_BAD_ARGUMENT if unavailable */

/* ===================================================================== */
/* Partials across parts (csoftmax.dask).  A reduction whose n axis is cut
 * into parts held apart (chunks) runs in three steps, giving the in-memory
 * functions' results within their accuracy bar and special-value rules:
 *   1. csm_partials_*  per part: the partial of each of its outer * inner
 *      slices (slice index outer_index * inner + inner_index);
 *   2. csm_combine_partials: the partials of all parts of each slice,
 *      combined exactly in part order (the in-memory long-row combine);
 *   3. csm_normalize_* per part: its outputs from the combined scales
 *      (softmax / log_softmax), or csm_logsumexp_from_scales.
 * Serial (the caller runs parts in parallel); every pointer is C-contiguous.
 * where and temperature as in csm_options, the same temperature in all three
 * steps (a bad one is CSM_ERROR_BAD_ARGUMENT). */

/* A partial record: max, count, rest_hi, rest_lo with
 * sum(exp((x - max) / T)) == count + rest_hi + rest_lo over the slice's
 * included elements; max is -inf for an empty, excluded or all -inf slice,
 * and max or rest is NaN for a slice holding NaN.  A scale record: state
 * (0 finite, 1 NaN, 2 +inf present, 3 only -inf), max, inverse_hi +
 * inverse_lo == 1 / sum (softmax), log_sum == log(sum) (log_softmax,
 * logsumexp). */
enum {
    CSM_PARTIAL_DOUBLES = 4,
    CSM_SCALE_DOUBLES = 5
};

/* partials: outer * inner partial records. */
int csm_partials_f32(csm_precision precision, const float *x, const uint8_t *where, int64_t outer, int64_t n,
                     int64_t inner, double temperature, double *partials);
int csm_partials_f64(csm_precision precision, const double *x, const uint8_t *where, int64_t outer, int64_t n,
                     int64_t inner, double temperature, double *partials);
/* partials: (parts, slices) partial records; scales: slices scale records. */
int csm_combine_partials(csm_operation operation, const double *partials, int64_t parts, int64_t slices,
                         double temperature, double *scales);
/* operation: CSM_SOFTMAX or CSM_LOG_SOFTMAX; y has x's shape (y may be x);
 * scales: the outer * inner scale records of csm_combine_partials. */
int csm_normalize_f32(csm_operation operation, csm_precision precision, const float *x, const uint8_t *where, float *y,
                      int64_t outer, int64_t n, int64_t inner, double temperature, const double *scales);
int csm_normalize_f64(csm_operation operation, csm_precision precision, const double *x, const uint8_t *where,
                      double *y, int64_t outer, int64_t n, int64_t inner, double temperature, const double *scales);
/* values[s] = logsumexp of slice s (scales of a CSM_LOGSUMEXP combine). */
int csm_logsumexp_from_scales(const double *scales, int64_t slices, double *values);

/* ------------------------------------------------------------------------- */
/* Cross-entropy from logits and segment (ragged) softmax (cross_entropy.c,  */
/* segments.c).                                                              */
/* ------------------------------------------------------------------------- */

typedef enum {
    CSM_REDUCTION_NONE = 0,
    CSM_REDUCTION_SUM = 1,
    CSM_REDUCTION_MEAN = 2
} csm_loss_reduction;

typedef struct {
    const int64_t *target;  /* (outer, inner) class indices, or NULL for probability targets */
    const double *weight;   /* n per-class weights, or NULL for all 1 */
    int64_t ignore_index;   /* class-index rows with this target count for nothing */
    double label_smoothing; /* in [0, 1] */
    csm_loss_reduction reduction;
} csm_cross_entropy_options;

/* PyTorch's cross_entropy of the logits x, a C-contiguous (outer, n, inner)
 * array with the n classes along the middle axis, fused in one pass per row:
 * the exact log-sum-exp of the row, its target logit and, for label smoothing
 * or probability targets, the weighted row sums, never a log_softmax array.
 * Targets are options->target, or else `probability`, laid out like x.
 * losses: (outer, inner) doubles, each row's loss (0 for ignored rows).
 * *loss: their sum (NONE, SUM) or the mean: the sum over the sum of the
 * target weights of the rows not ignored (class indices) or over the row
 * count (probabilities); 0 / 0 gives NaN.  grad: NULL, or (outer, n, inner)
 * receiving the gradient of *loss with respect to x.  Bitwise identical for
 * every thread count.  Returns CSM_OK, CSM_ERROR_NO_MEMORY, or
 * CSM_ERROR_BAD_ARGUMENT (a class index outside [0, n) that is not
 * ignore_index, label_smoothing outside [0, 1], a bad reduction or shape). */
int csm_cross_entropy_f32(const float *x, const float *probability, int64_t outer, int64_t n, int64_t inner,
                          const csm_cross_entropy_options *options, double *losses, double *loss, float *grad);
int csm_cross_entropy_f64(const double *x, const double *probability, int64_t outer, int64_t n, int64_t inner,
                          const csm_cross_entropy_options *options, double *losses, double *loss, double *grad);

/* softmax / log_softmax / logsumexp of every segment [indptr[s], indptr[s + 1])
 * of the rows of the C-contiguous (indptr[segments], inner) array x, for each
 * of the inner columns: y is x's shape (softmax, log_softmax; may be x) or
 * (segments, inner) (logsumexp; -inf for an empty segment).  Each segment's
 * bits equal csm_reduce_*(operation, precision, segment, ..., 1, length, inner);
 * segments are spread over threads by element count, a segment large enough
 * uses every thread.  Returns CSM_OK, CSM_ERROR_NO_MEMORY, or
 * CSM_ERROR_BAD_ARGUMENT (indptr[0] != 0 or decreasing). */
int csm_segment_reduce_f32(csm_operation operation, csm_precision precision, const float *x, float *y,
                           const int64_t *indptr, int64_t segments, int64_t inner);
int csm_segment_reduce_f64(csm_operation operation, csm_precision precision, const double *x, double *y,
                           const int64_t *indptr, int64_t segments, int64_t inner);

#ifdef __cplusplus
}
#endif

#endif /* CSOFTMAX_H */
