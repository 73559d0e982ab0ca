/* Cross-entropy from logits (PyTorch's semantics), fused on the kernels: per
 * row, the kernel's partial gives the exact log-sum-exp (lse = max + log_sum,
 * log_sum from log1p as in log_softmax), and the loss is
 *     sum_c a_c * (lse - x_c) = D + A * log_sum,  D = sum_c a_c (max - x_c),  A = sum_c a_c
 * with a the row's target distribution times the class weights.  Every term
 * of D is >= 0 (for weights and targets >= 0), so nothing cancels; D is
 * summed in double with a compensation (Neumaier), within an ULP or two of
 * the result's type.  The gradient is A * softmax - a, scaled by the
 * reduction.  Rows of at most 64 classes instead take their loss from the
 * row-tile kernel's log_softmax of a tile of rows, in a buffer in L1 (one
 * kernel call per tile rather than per row; every term -a_c log p_c >= 0).
 * Per-row losses are reduced in index order after the parallel part, so
 * results are bitwise identical for any thread count.  The per-type code is
 * cross_entropy_body.h. */
#include <math.h>
#include <stdlib.h>

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

/* inner > 1: up to this many columns are transposed into contiguous rows at
 * once, within this many bytes per row buffer. */
#define TILE_COLUMNS 64
#define TILE_BYTES (512 * 1024)
/* Rows of at most SHORT_CLASSES classes go through the row-tile kernel,
 * SHORT_TILE_ROWS rows per call. */
#define SHORT_CLASSES 64
#define SHORT_TILE_ROWS 64

typedef struct {
    const csm_kernel_table *kernels;
    int64_t outer, n, inner;
    const int64_t *target; /* NULL: probability targets */
    const double *weight;  /* NULL: all 1 */
    int64_t ignore_index;
    double smoothing;       /* epsilon */
    double smoothing_class; /* epsilon / n */
    double weight_total;    /* sum of the class weights */
    double grad_factor;     /* the reduction's d loss / d row loss */
} csm_cross_entropy;

/* Neumaier's compensated sum: exact to a rounding or two for any order of magnitudes. */
typedef struct {
    double sum, compensation;
} compensated_sum;

static inline void compensated_add(compensated_sum *s, double term)
{
    const double t = s->sum + term;
    if (fabs(s->sum) >= fabs(term))
        s->compensation += (s->sum - t) + term;
    else
        s->compensation += (term - t) + s->sum;
    s->sum = t;
}

/* An infinite term leaves a NaN compensation (inf - inf): the sum alone is right then. */
static inline double compensated_value(const compensated_sum *s)
{
    return isfinite(s->sum) ? s->sum + s->compensation : s->sum;
}

/* Validates the class indices and sums, in index order, the weights of the
 * rows not ignored (the mean's denominator). */
static int target_weight_total(const csm_cross_entropy *ce, double *denominator)
{
    compensated_sum total = {0.0, 0.0};
    const int64_t rows = ce->outer * ce->inner;
    for (int64_t row = 0; row < rows; row++) {
        const int64_t t = ce->target[row];
        if (t == ce->ignore_index)
            continue;
        if (t < 0 || t >= ce->n)
            return CSM_ERROR_BAD_ARGUMENT;
        compensated_add(&total, ce->weight ? ce->weight[t] : 1.0);
    }
    *denominator = compensated_value(&total);
    return CSM_OK;
}

static int prepare(csm_cross_entropy *ce, int64_t outer, int64_t n, int64_t inner, int has_probability,
                   const csm_cross_entropy_options *options, double *denominator)
{
    if (!options || outer < 0 || n < 0 || inner < 0 || !(options->label_smoothing >= 0.0) ||
        !(options->label_smoothing <= 1.0) || (options->target == NULL) == !has_probability ||
        (options->reduction != CSM_REDUCTION_NONE && options->reduction != CSM_REDUCTION_SUM &&
         options->reduction != CSM_REDUCTION_MEAN))
        return CSM_ERROR_BAD_ARGUMENT;
    ce->kernels = csm_current_kernels();
    ce->outer = outer;
    ce->n = n;
    ce->inner = inner;
    ce->target = options->target;
    ce->weight = options->weight;
    ce->ignore_index = options->ignore_index;
    ce->smoothing = options->label_smoothing;
    ce->smoothing_class = n > 0 ? options->label_smoothing / (double)n : 0.0;
    compensated_sum weights = {0.0, 0.0};
    for (int64_t c = 0; c < n; c++)
        compensated_add(&weights, options->weight ? options->weight[c] : 1.0);
    ce->weight_total = compensated_value(&weights);
    if (ce->target) {
        const int status = target_weight_total(ce, denominator);
        if (status != CSM_OK)
            return status;
    } else {
        *denominator = n > 0 ? (double)(outer * inner) : 0.0; /* torch: NaN mean without elements */
    }
    ce->grad_factor = options->reduction == CSM_REDUCTION_MEAN ? 1.0 / *denominator : 1.0;
    return CSM_OK;
}

/* The reduced loss from the per-row losses, in index order. */
static double reduce_losses(const double *losses, int64_t rows, csm_loss_reduction reduction, double denominator)
{
    compensated_sum total = {0.0, 0.0};
    for (int64_t row = 0; row < rows; row++)
        compensated_add(&total, losses[row]);
    const double sum = compensated_value(&total);
    return reduction == CSM_REDUCTION_MEAN ? sum / denominator : sum;
}

#define ELEMENT float
#define SUFFIX f32
#include "cross_entropy_body.h"
#undef ELEMENT
#undef SUFFIX

#define ELEMENT double
#define SUFFIX f64
#include "cross_entropy_body.h"
#undef ELEMENT
#undef SUFFIX
