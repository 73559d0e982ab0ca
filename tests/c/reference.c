/* Long double reference rows and ULP measures: see reference.h. */
#include "reference.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double unit_roundoff(test_dtype dtype) { return dtype == DTYPE_F32 ? 0x1p-24 : 0x1p-53; }
double smallest_normal(test_dtype dtype) { return dtype == DTYPE_F32 ? FLT_MIN : DBL_MIN; }

/* Neumaier's compensated sum: the error stays at a few long double ULPs for
 * any n, so a 100000-term row is still exact to far below a float64 ULP. */
typedef struct {
    long double sum, compensation;
} compensated_sum;

static void compensated_add(compensated_sum *s, long double term)
{
    long double t = s->sum + term;
    if (fabsl(s->sum) >= fabsl(term))
        s->compensation += (s->sum - t) + term;
    else
        s->compensation += (term - t) + s->sum;
    s->sum = t;
}

static long double compensated_value(const compensated_sum *s) { return s->sum + s->compensation; }

/* x - max as hi + lo exactly (TwoSum in long double of two dtype values). */
static void exact_difference(double x, long double max, long double *hi, long double *lo)
{
    const long double a = x, b = -max;
    *hi = a + b;
    const long double bb = *hi - a;
    *lo = isinf(*hi) ? 0.0L : (a - (*hi - bb)) + (b - bb);
}

static reference_value split(long double value)
{
    reference_value r = {(double)value, 0.0};
    if (isfinite(r.hi))
        r.lo = (double)(value - (long double)r.hi);
    return r;
}

static csm_row_state classify(const double *x, int64_t n)
{
    int nan = 0, positive_infinity = 0, finite = 0;
    for (int64_t i = 0; i < n; i++) {
        nan |= isnan(x[i]) != 0;
        positive_infinity |= x[i] == INFINITY;
        finite |= isfinite(x[i]) != 0;
    }
    if (nan)
        return CSM_ROW_NAN;
    if (positive_infinity)
        return CSM_ROW_POS_INF;
    return finite ? CSM_ROW_FINITE : CSM_ROW_NEG_INF;
}

void reference_compute(const double *x, int64_t n, reference_row *row)
{
    memset(row, 0, sizeof *row);
    row->n = n;
    row->state = classify(x, n);
    row->exp_term = malloc((size_t)n * sizeof(reference_value));
    row->softmax = malloc((size_t)n * sizeof(reference_value));
    row->log_softmax = malloc((size_t)n * sizeof(reference_value));
    row->distance = calloc((size_t)n, sizeof(double));
    if (!row->exp_term || !row->softmax || !row->log_softmax || !row->distance)
        abort();

    if (row->state != CSM_ROW_FINITE) {
        row->max = row->state == CSM_ROW_NAN ? NAN : row->state == CSM_ROW_POS_INF ? INFINITY : -INFINITY;
        row->logsumexp = split(row->max);
        for (int64_t i = 0; i < n; i++)
            row->exp_term[i] = row->softmax[i] = row->log_softmax[i] = split(NAN);
        return;
    }

    long double max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    row->max = max;

    long double *terms = malloc((size_t)n * sizeof(long double));
    if (!terms)
        abort();
    compensated_sum rest = {0, 0}, weighted = {0, 0}, rest_weighted = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        long double hi, lo;
        exact_difference(x[i], max, &hi, &lo);
        /* exp(hi + lo) = exp(hi) (1 + lo) to far below a long double ULP: |lo| <= ulp(hi) / 2 */
        terms[i] = isinf(hi) ? 0.0L : expl(hi) * (1.0L + lo);
        row->exp_term[i] = split(terms[i]);
        row->distance[i] = isinf(hi) ? 0.0 : (double)fabsl(hi + lo);
        compensated_add(&weighted, terms[i] * row->distance[i]);
        if (x[i] == max) {
            row->count += 1.0L;
        } else {
            compensated_add(&rest, terms[i]);
            compensated_add(&rest_weighted, terms[i] * row->distance[i]);
        }
    }
    row->rest = compensated_value(&rest);
    const long double sum = row->count + row->rest;
    /* log1p keeps log_softmax exact near 0: log(sum) = log1p((count - 1) + rest) */
    row->log_sum = log1pl((row->count - 1.0L) + row->rest);
    row->logsumexp = split(max + row->log_sum);
    row->spread = (double)(compensated_value(&weighted) / sum);
    row->rest_spread = row->rest > 0 ? (double)(compensated_value(&rest_weighted) / row->rest) : 0.0;
    for (int64_t i = 0; i < n; i++) {
        long double hi, lo;
        exact_difference(x[i], max, &hi, &lo);
        row->softmax[i] = split(terms[i] / sum);
        row->log_softmax[i] = split(isinf(hi) ? -INFINITY : (hi - row->log_sum) + lo);
    }
    free(terms);
}

void reference_free(reference_row *row)
{
    free(row->exp_term);
    free(row->softmax);
    free(row->log_softmax);
    free(row->distance);
    memset(row, 0, sizeof *row);
}

double reference_spacing(double reference, test_dtype dtype)
{
    const int mantissa_bits = dtype == DTYPE_F32 ? 23 : 52;
    const int minimum_exponent = dtype == DTYPE_F32 ? -126 : -1022;
    const double magnitude = fabs(dtype == DTYPE_F32 ? (double)(float)reference : reference);
    int exponent = magnitude == 0 ? minimum_exponent : ilogb(magnitude);
    if (exponent < minimum_exponent)
        exponent = minimum_exponent;
    return ldexp(1.0, exponent - mantissa_bits);
}

double ulp_error(reference_value reference, double computed, test_dtype dtype)
{
    const double r = reference.hi;
    if (isnan(r) || isnan(computed))
        return isnan(r) && isnan(computed) ? 0.0 : INFINITY;
    if (isinf(r) || isinf(computed))
        return r == computed ? 0.0 : INFINITY;
    const double tiny = smallest_normal(dtype);
    if (fabs(r) < tiny) {
        const int same_sign = computed == 0 || r == 0 || (computed > 0) == (r > 0);
        return fabs(computed) <= tiny && same_sign ? 0.0 : INFINITY;
    }
    /* computed - hi is exact whenever the error is small (Sterbenz) */
    return fabs((computed - r) - reference.lo) / reference_spacing(r, dtype);
}

/* Maps a value onto the integers so that adjacent representable values
 * differ by one (negative values mirrored below zero). */
static int64_t ordered_bits(double value, test_dtype dtype)
{
    if (dtype == DTYPE_F32) {
        const float f = (float)value;
        int32_t bits;
        memcpy(&bits, &f, sizeof bits);
        return bits < 0 ? -(int64_t)(bits & 0x7FFFFFFF) : bits;
    }
    int64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits < 0 ? -(bits & INT64_MAX) : bits;
}

double ulp_distance(double a, double b, test_dtype dtype)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b) ? 0.0 : INFINITY;
    if (isinf(a) || isinf(b))
        return a == b ? 0.0 : INFINITY;
    return fabs((double)(ordered_bits(a, dtype) - ordered_bits(b, dtype)));
}
