/* Combines the (max, count, rest) partials of a row's blocks, in their fixed
 * order, into the scale its output pass needs, and decides the special-value
 * rules of the contract in one place.
 *
 * Numerics: the sum is carried as a double-double; each block is rescaled by
 * exp(max_b - M) computed in long double where it is wider than double
 * (x86-64, aarch64), so the combine adds well under 0.1 ULP to a float64
 * result.  log(sum) is log1p(sum - 1) with sum - 1 formed exactly from the
 * masked partials, which keeps log_softmax exact near 0.  With a temperature
 * T the block factors are exp((max_b - M) / T), the difference times 1/T
 * carried as a double-double.  Products use
 * Dekker's split rather than fma(): this file is built for the baseline ISA,
 * where fma() is a slow software routine. */
#include <float.h>
#include <stddef.h>
#include <math.h>

#include "kernels/kernel_table.h"

typedef struct {
    double hi, lo;
} double_double;

static double_double two_sum(double a, double b)
{
    double s = a + b;
    double bb = s - a;
    double_double r = {s, (a - (s - bb)) + (b - bb)};
    return r;
}

/* Dekker/Veltkamp: a * b == hi + lo exactly (no overflow here: values are sums of <= 2^53 terms <= 1). */
static double_double two_product(double a, double b)
{
    const double split = 134217729.0; /* 2^27 + 1 */
    double ca = split * a, cb = split * b;
    double a_hi = ca - (ca - a), a_lo = a - a_hi;
    double b_hi = cb - (cb - b), b_lo = b - b_hi;
    double p = a * b;
    double_double r = {p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo};
    return r;
}

static double_double dd_add(double_double a, double_double b)
{
    double_double s = two_sum(a.hi, b.hi);
    s.lo += a.lo + b.lo;
    return two_sum(s.hi, s.lo);
}

static double_double dd_mul(double_double a, double_double b)
{
    double_double p = two_product(a.hi, b.hi);
    p.lo += a.hi * b.lo + a.lo * b.hi;
    return two_sum(p.hi, p.lo);
}

/* exp(difference) for difference = hi + lo <= 0, as a double-double. */
static double_double exp_double_double(double_double difference)
{
#if LDBL_MANT_DIG > DBL_MANT_DIG
    long double e = expl((long double)difference.hi + (long double)difference.lo);
    double hi = (double)e;
    double_double r = {hi, (double)(e - (long double)hi)};
#else
    /* long double is double (MSVC, Apple arm64): exp(hi) * (1 + lo), ~1 ULP. */
    double e = exp(difference.hi);
    double_double r = {e, e * difference.lo};
#endif
    return r;
}

/* The scale from rest = sum(exp(x - M)) - 1 (a double-double). */
static void scale_from_rest(double_double rest, int operation, csm_row_scale *scale)
{
    if (operation == CSM_SOFTMAX) {
        /* 1 / (1 + rest) as a double-double: one Newton step on the residual. */
        double_double sum = dd_add((double_double){1.0, 0.0}, rest);
        double inverse = 1.0 / sum.hi;
        double_double product = two_product(inverse, sum.hi);
        double residual = ((1.0 - product.hi) - product.lo) - inverse * sum.lo;
        scale->inverse_hi = inverse;
        scale->inverse_lo = residual * inverse;
        scale->log_sum = 0.0;
    } else {
        scale->inverse_hi = scale->inverse_lo = 0.0;
        scale->log_sum = log1p(rest.hi + rest.lo);
    }
}

/* (max_b - M) / T as a double-double: exact difference, then times 1/T. */
static double_double scaled_difference(double block_max, double row_max, const csm_temperature *temperature)
{
    double_double difference = two_sum(block_max, -row_max);
    if (!temperature)
        return difference;
    double_double inverse = {temperature->inverse_hi, temperature->inverse_lo};
    /* Far below exp's range the factor is 0 (and Dekker's split could overflow). */
    if (difference.hi * inverse.hi < -0x1p20)
        return (double_double){-INFINITY, 0.0};
    return dd_mul(difference, inverse);
}

const csm_temperature *csm_temperature_init(csm_temperature *storage, double temperature)
{
    if (temperature == 1.0)
        return NULL;
    /* 1/T rounded, then the exact residual 1 - hi * T divided by T (once per
     * call: the library fma() is fine here). */
    double inverse = 1.0 / temperature;
    storage->inverse_hi = inverse;
    storage->inverse_lo = fma(-inverse, temperature, 1.0) / temperature;
    return storage;
}

csm_row_state csm_merge_partials(const csm_partial *partials, int64_t count, int64_t stride,
                                 const csm_temperature *temperature, csm_partial *merged)
{
    double row_max = -INFINITY;
    for (int64_t b = 0; b < count; b++) {
        const csm_partial *p = &partials[b * stride];
        if (isnan(p->rest_hi) || isnan(p->max)) {
            *merged = (csm_partial){NAN, 0.0, NAN, 0.0};
            return CSM_ROW_NAN;
        }
        if (p->max > row_max)
            row_max = p->max;
    }
    if (row_max == INFINITY || row_max == -INFINITY) {
        *merged = (csm_partial){row_max, row_max == INFINITY ? 1.0 : 0.0, 0.0, 0.0};
        return row_max == INFINITY ? CSM_ROW_POS_INF : CSM_ROW_NEG_INF;
    }

    /* rest = sum(exp(x - M)) - 1: the maxima's exact count first, so that
     * "- 1" is exact, then every block's other terms in block order. */
    double ones = -1.0;
    for (int64_t b = 0; b < count; b++)
        if (partials[b * stride].max == row_max)
            ones += partials[b * stride].count;
    double_double rest = {ones, 0.0};
    for (int64_t b = 0; b < count; b++) {
        const csm_partial *p = &partials[b * stride];
        double_double block_rest = {p->rest_hi, p->rest_lo};
        if (p->max == row_max) {
            rest = dd_add(rest, block_rest);
        } else if (p->max != -INFINITY) {
            double_double block_sum = dd_add(block_rest, (double_double){p->count, 0.0});
            double_double difference = scaled_difference(p->max, row_max, temperature);
            rest = dd_add(rest, dd_mul(block_sum, exp_double_double(difference)));
        }
    }
    *merged = (csm_partial){row_max, 1.0, rest.hi, rest.lo};
    return CSM_ROW_FINITE;
}

/* log1p(r) for r >= 0 from log: log(u) r / (u - 1) with u = 1 + r rounded
 * corrects u's rounding (Goldberg), to a few double ULP -- far below a
 * float's -- and glibc's log costs a fraction of its log1p. */
static double log1p_from_log(double r)
{
    const double u = 1.0 + r;
    return u == 1.0 ? r : log(u) * (r / (u - 1.0));
}

/* The scale of a row of one finite partial, the common case, on a short
 * dependency chain: it sits between a row's passes, so its latency counts.
 * float32: 1 / sum and log(sum) in double alone, whose 2^-53 errors are far
 * below a float's ULP. */
static void scale_from_single_partial(const csm_partial *p, int operation, int float32, csm_row_scale *scale)
{
    scale->max = p->max;
    scale->inverse_hi = scale->inverse_lo = scale->log_sum = 0.0;
    if (operation == CSM_SOFTMAX) {
        /* sum = count + rest_hi + rest_lo; the store path's partial has count 0, rest_lo 0 */
        double_double sum = p->count == 0.0 ? (double_double){p->rest_hi, p->rest_lo} : two_sum(p->count, p->rest_hi);
        if (p->count != 0.0)
            sum.lo += p->rest_lo;
        double inverse = 1.0 / (float32 ? sum.hi + sum.lo : sum.hi);
        scale->inverse_hi = inverse;
        if (!float32) {
            double_double product = two_product(inverse, sum.hi);
            scale->inverse_lo = (((1.0 - product.hi) - product.lo) - inverse * sum.lo) * inverse;
        }
    } else if (p->count == 0.0) {
        /* an unmasked partial (fast mode's classical sum, kernel_table.h): log, not log1p */
        scale->log_sum = log(p->rest_hi + p->rest_lo);
    } else {
        /* rest = sum - 1 = (count - 1) + rest_hi + rest_lo, count - 1 exact */
        double_double rest = two_sum(p->count - 1.0, p->rest_hi);
        const double r = rest.hi + (rest.lo + p->rest_lo);
        scale->log_sum = float32 ? log1p_from_log(r) : log1p(r);
    }
}

csm_row_state csm_row_scale_from_partials(const csm_partial *partials, int64_t count, int operation,
                                          const csm_temperature *temperature, csm_row_scale *scale)
{
    if (count == 1 && isfinite(partials->max) && isfinite(partials->rest_hi)) {
        scale_from_single_partial(partials, operation, 0, scale);
        return CSM_ROW_FINITE;
    }
    csm_partial merged;
    csm_row_state state = csm_merge_partials(partials, count, 1, temperature, &merged);
    if (state != CSM_ROW_FINITE)
        return state;
    /* merged.count is 1: rest is already sum - 1 */
    scale->max = merged.max;
    scale_from_rest((double_double){merged.rest_hi, merged.rest_lo}, operation, scale);
    return CSM_ROW_FINITE;
}

csm_row_state csm_row_scale_float32(const csm_partial *partial, int operation, const csm_temperature *temperature,
                                    csm_row_scale *scale)
{
    if (!(isfinite(partial->max) && isfinite(partial->rest_hi)))
        return csm_row_scale_from_partials(partial, 1, operation, temperature, scale);
    scale_from_single_partial(partial, operation, 1, scale);
    return CSM_ROW_FINITE;
}

double csm_logsumexp_from_state(csm_row_state state, const csm_row_scale *scale)
{
    switch (state) {
    case CSM_ROW_FINITE:
        return scale->max + scale->log_sum;
    case CSM_ROW_POS_INF:
        return INFINITY;
    case CSM_ROW_NEG_INF:
        return -INFINITY;
    default:
        return NAN;
    }
}

void csm_block_scale(const csm_partial *block, const csm_row_scale *row, const csm_temperature *temperature,
                     csm_row_scale *scale)
{
    *scale = *row;
    if (block->max == row->max)
        return;
    double_double factor = exp_double_double(scaled_difference(block->max, row->max, temperature));
    double_double inverse = dd_mul(factor, (double_double){row->inverse_hi, row->inverse_lo});
    scale->inverse_hi = inverse.hi;
    scale->inverse_lo = inverse.lo;
}
