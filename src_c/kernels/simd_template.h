/* Width-generic SIMD softmax kernels.  Included once per ISA after that ISA's
 * vector vocabulary (vector_<isa>.h), which defines vf/vd, their lane counts
 * and the vf_* / vd_* operations used here.  Every function this file
 * defines is static and suffixed with the ISA, so no code compiled for one
 * ISA can be merged into another ISA's (or the baseline's) symbols.
 *
 * Numerical method (exact mode), per element of a row with maximum M:
 *   1. d = x - M carried exactly as hi + lo: a Fast2Sum whose operands are
 *      ordered with min/max (x <= M, so min(x, -M) has the larger magnitude).
 *   2. exp(hi + lo): n = round(hi / ln2) with a magic bias (so the bits of the
 *      biased value give 2^n directly), Cody-Waite reduction with a split ln2
 *      (n * ln2_hi is exact), lo folded into the reduced argument t, then
 *      1 + t + t^2 q(t) with q a near-minimax polynomial on [-ln2/2, ln2/2]
 *      (fitted with mpmath.chebyfit; float32 degree 6, float64 degree 11;
 *      truncation 0.09 and 0.07 ULP).  Stored terms below the normal range
 *      (d < ln(smallest normal)) are flushed to +0; summed-only terms are
 *      computed times 2^64 so that sums of subnormal terms survive.
 *   3. sums in float64 (float32 rows: pairs of terms added in float32, then
 *      double) and compensated Kahan sums (float64 rows); log_softmax and
 *      logsumexp sum only the non-maximal terms so log1p keeps outputs near 0
 *      exact.
 *   4. softmax scales by 1/sum split into hi + lo: y = fma(e, hi, e * lo),
 *      one rounding; float32 log_softmax is formed in double, float64 as
 *      (hi - log_sum) + lo.
 * Measured max error: see TOLERANCES in tests/reference.py.
 * Fast mode drops step 1's correction (d rounded once, the classical
 * algorithm) and sums float32 terms in float32 for up to 16 steps per lane.
 *
 * NaN and infinities are not tested per element: a NaN x, +inf (inf - inf)
 * and an all -inf row all surface as a NaN sum, which the driver turns into
 * the contract's special rows (kernel_table.h, row_scale.c). */

#include <math.h>
#include <stddef.h>

#include "kernel_table.h"

#define CSM_CONCAT_(a, b) a##_##b
#define CSM_CONCAT(a, b) CSM_CONCAT_(a, b)
#define KERNEL(name) CSM_CONCAT(name, CSM_ISA_SUFFIX)
#define CSM_STRINGIFY_(a) #a
#define CSM_STRINGIFY(a) CSM_STRINGIFY_(a)

/* ---- float32 constants ---- */
#define LOG2E_F32 0x1.715476p+0f
#define MAGIC_BIAS_F32 0x1.8000FEp23f /* 1.5 * 2^23 + 127: low bits of x + bias are n + 127 */
#define LN2_HI_F32 0x1.62E400p-1f     /* 17 bits: n * LN2_HI_F32 is exact for |n| < 128 */
#define LN2_LO_F32 0x1.7F7D1Cp-20f
#define EXP_CUTOFF_F32 -0x1.5D589Ep6f /* ln of the smallest normal float, rounded up */
/* Sums feeding log1p must keep terms below the normal range (their total may
 * be a normal result): those terms are computed times 2^64, through a bias
 * that puts n + 127 + 64 in the exponent, and the sum is scaled back in double. */
#define SUM_SCALE_EXPONENT 64
#define SUM_UNSCALE 0x1p-64
#define MAGIC_BIAS_SCALED_F32 0x1.80017Ep23f /* 1.5 * 2^23 + 127 + 64 */
#define EXP_CUTOFF_SCALED_F32 -0x1.07655Cp7f /* ln(2^-190): n + 191 stays >= 1 */
/* Fast mode clamps instead of masking: these round to the n whose biased
 * exponent field is 0 (n = -127, and -191 scaled), so 2^n reads as +0. */
#define EXP_ZERO_F32 -88.0f
#define EXP_ZERO_SCALED_F32 -132.4f
/* exp(t) = 1 + t + t^2 q(t), q degree 4 (a degree-5 exp would add 3.4 ULP,
 * more than fast mode's "x - max rounded once" promise allows) */
#define EXP_Q4_F32 0x1.6D110Ap-10f
#define EXP_Q3_F32 0x1.120B6Ep-7f
#define EXP_Q2_F32 0x1.55551Ap-5f
#define EXP_Q1_F32 0x1.5554DCp-3f
#define EXP_Q0_F32 0x1.000000p-1f

/* ---- float64 constants ---- */
#define LOG2E_F64 0x1.71547652B82FEp+0
#define MAGIC_BIAS_F64 0x1.8000000000000p52 + 1023.0 /* low bits of x + bias are n + 1023 */
#define LN2_HI_F64 0x1.62E42FEE00000p-1 /* 32 bits: n * LN2_HI_F64 exact for |n| < 2^21 */
#define LN2_LO_F64 0x1.A39EF35793C76p-33
#define EXP_CUTOFF_F64 -0x1.6232BDD7ABCD2p+9 /* ln of the smallest normal double */
#define MAGIC_BIAS_SCALED_F64 0x1.8000000000000p52 + 1087.0 /* 1023 + 64 */
#define EXP_CUTOFF_SCALED_F64 -0x1.786100D6A6071p+9 /* ln(2^-1086): n + 1087 stays >= 1 */
#define EXP_ZERO_F64 -708.9   /* n = -1023 */
#define EXP_ZERO_SCALED_F64 -753.4 /* n = -1087 */
/* exp(t) = 1 + t + t^2 q(t), q degree 9 (0.07 ULP truncation) */
static const double EXP_Q_F64[10] = {
    0x1.AF38A9B0EC855p-26, 0x1.289185613A3D6p-22, 0x1.71DE0DAE63BB3p-19, 0x1.A019B90D2AE7Ap-16,
    0x1.A01A01A7C41D5p-13, 0x1.6C16C1788BD90p-10, 0x1.11111111109B3p-7,  0x1.5555555553D63p-5,
    0x1.5555555555556p-3,  0x1.0000000000001p-1,
};

#define UNROLL 4 /* vectors per main-loop iteration */

/* ------------------------------------------------------------------------- */
/* float32 element math                                                       */
/* ------------------------------------------------------------------------- */

/* x - M as hi + lo (exact) or hi alone (fast).  x goes second into min/max so
 * a NaN x propagates. */
CSM_INLINE vf difference_f32(vf x, vf negative_max, vf *lo, const int exact)
{
    if (!exact) {
        *lo = vf_set1(0.0f);
        return vf_add(x, negative_max);
    }
    vf big = vf_min(negative_max, x); /* |big| >= |small| because x <= M */
    vf small = vf_max(negative_max, x);
    vf hi = vf_add(big, small);
    *lo = vf_sub(small, vf_sub(hi, big));
    return hi;
}

/* exp(hi + lo) for hi <= 0; 0 below the normal range; NaN stays NaN.
 * scaled: exp(hi + lo) * 2^64, 0 below 2^-190. */
CSM_INLINE vf exp_f32(vf hi, vf lo, const int exact, const int scaled)
{
    const vf magic_bias = vf_set1(scaled ? MAGIC_BIAS_SCALED_F32 : MAGIC_BIAS_F32);
    if (!exact) /* clamp where 2^n's exponent field is 0: e = p * +0 (hi second: NaN stays) */
        hi = vf_max(vf_set1(scaled ? EXP_ZERO_SCALED_F32 : EXP_ZERO_F32), hi);
    vf biased = vf_fma(hi, vf_set1(LOG2E_F32), magic_bias);
    vf n = vf_sub(biased, magic_bias);
    vf r = vf_fma(n, vf_set1(-LN2_HI_F32), hi); /* exact */
    vf t = exact ? vf_add(r, vf_fma(n, vf_set1(-LN2_LO_F32), lo)) : vf_fma(n, vf_set1(-LN2_LO_F32), r);
    vf q = vf_fma(vf_set1(EXP_Q4_F32), t, vf_set1(EXP_Q3_F32));
    q = vf_fma(q, t, vf_set1(EXP_Q2_F32));
    q = vf_fma(q, t, vf_set1(EXP_Q1_F32));
    q = vf_fma(q, t, vf_set1(EXP_Q0_F32));
    vf p = vf_add(vf_set1(1.0f), vf_fma(vf_mul(t, t), q, t));
    vf e = vf_mul(p, vf_exponent_from_biased(biased));
    if (!exact)
        return e;
    /* exact: lo is NaN for x = -inf, so mask rather than clamp */
    return vf_keep(vf_not_less(hi, vf_set1(scaled ? EXP_CUTOFF_SCALED_F32 : EXP_CUTOFF_F32)), e);
}

CSM_INLINE vf exp_minus_max_f32(vf x, vf negative_max, const int exact, const int scaled)
{
    vf lo;
    vf hi = difference_f32(x, negative_max, &lo, exact);
    return exp_f32(hi, lo, exact, scaled);
}

/* e / sum with one rounding (exact) or e * rounded(1/sum) (fast). */
CSM_INLINE vf scale_f32(vf e, vf inverse_hi, vf inverse_lo, const int exact)
{
    return exact ? vf_fma(e, inverse_hi, vf_mul(e, inverse_lo)) : vf_mul(e, inverse_hi);
}

/* x - M - log_sum: exact in double, rounded once; fast in float. */
CSM_INLINE vf log_softmax_f32(vf x, vf max_f, vf log_sum_f, vd max_d, vd log_sum_d, const int exact)
{
    if (!exact)
        return vf_sub(vf_sub(x, max_f), log_sum_f);
    vd low = vd_sub(vd_sub(vd_from_vf_low(x), max_d), log_sum_d);
    vd high = vd_sub(vd_sub(vd_from_vf_high(x), max_d), log_sum_d);
    return vf_from_vd_pair(low, high);
}

static float max_f32(const float *x, int64_t n)
{
    vf m[UNROLL];
    for (int k = 0; k < UNROLL; k++)
        m[k] = vf_set1(-INFINITY);
    int64_t i = 0;
    /* main loop */
    for (; i + UNROLL * VF_LANES <= n; i += UNROLL * VF_LANES)
        for (int k = 0; k < UNROLL; k++)
            m[k] = vf_max(m[k], vf_load(x + i + k * VF_LANES));
    for (; i + VF_LANES <= n; i += VF_LANES)
        m[0] = vf_max(m[0], vf_load(x + i));
    /* tail */
    if (i < n)
        m[0] = vf_max(m[0], vf_load_partial(x + i, n - i, -INFINITY));
    for (int k = 1; k < UNROLL; k++)
        m[0] = vf_max(m[0], m[k]);
    return vf_reduce_max(m[0]);
}

/* Adds the lanes of `count` double vectors in a fixed order. */
static double sum_lanes_f64(const vd *vectors, int count)
{
    double lanes[VD_LANES];
    double total = 0.0;
    for (int k = 0; k < count; k++) {
        vd_store(lanes, vectors[k]);
        for (int j = 0; j < VD_LANES; j++)
            total += lanes[j];
    }
    return total;
}

/* ------------------------------------------------------------------------- */
/* float32 row kernels                                                        */
/* ------------------------------------------------------------------------- */

/* Fast mode sums FAST_FOLD float32 terms per lane before moving them into
 * double: at most 16 roundings of relative size 2^-24 per partial sum. */
#define FAST_FOLD 16

CSM_INLINE void fold_float_sums(vf *float_sums, vd *sums)
{
    vf pair0 = vf_add(float_sums[0], float_sums[1]), pair1 = vf_add(float_sums[2], float_sums[3]);
    sums[0] = vd_add(sums[0], vd_from_vf_low(pair0));
    sums[1] = vd_add(sums[1], vd_from_vf_high(pair0));
    sums[2] = vd_add(sums[2], vd_from_vf_low(pair1));
    sums[3] = vd_add(sums[3], vd_from_vf_high(pair1));
    for (int k = 0; k < UNROLL; k++)
        float_sums[k] = vf_set1(0.0f);
}

/* store: y = exp(x - M), plain sum.  !store: masked sum of the non-maximal
 * terms plus the count of maxima (tail lanes are filled with M, which counts
 * nowhere: count is n minus the non-maximal lanes). */
CSM_INLINE void partial_f32_body(const float *x, float *y, int64_t n, csm_partial *partial,
                                 const int exact, const int store);

/* Only -inf (and NaN): nothing finite to store against, and y may be x, so
 * report the masked partial (NaN if any NaN) and store zeros. */
static void partial_f32_without_maximum(const float *x, float *y, int64_t n, csm_partial *partial, const int exact)
{
    if (exact)
        partial_f32_body(x, NULL, n, partial, 1, 0);
    else
        partial_f32_body(x, NULL, n, partial, 0, 0);
    for (int64_t i = 0; i < n; i++)
        y[i] = 0;
}

CSM_INLINE void partial_f32_body(const float *x, float *y, int64_t n, csm_partial *partial,
                                 const int exact, const int store)
{
    const float row_max = max_f32(x, n);
    if (store && row_max == -INFINITY) {
        partial_f32_without_maximum(x, y, n, partial, exact);
        return;
    }
    const vf max_v = vf_set1(row_max);
    const vf negative_max = vf_set1(-row_max);
    vd sums[UNROLL] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    vf float_sums[UNROLL] = {vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f)};
    int unfolded = 0;
    vf_count not_max = vf_count_zero();
    int64_t i = 0;
    /* main loop: exact adds pairs of vectors in float32, then in double */
    for (; i + UNROLL * VF_LANES <= n; i += UNROLL * VF_LANES) {
        vf e[UNROLL];
        for (int k = 0; k < UNROLL; k++) {
            vf xk = vf_load(x + i + k * VF_LANES);
            e[k] = exp_minus_max_f32(xk, negative_max, exact, !store);
            if (store) {
                vf_store(y + i + k * VF_LANES, e[k]);
            } else {
                vf_mask other = vf_not_equal(xk, max_v);
                e[k] = vf_keep(other, e[k]);
                not_max = vf_count_add(not_max, other);
            }
        }
        if (exact) {
            vf pair0 = vf_add(e[0], e[1]), pair1 = vf_add(e[2], e[3]);
            sums[0] = vd_add(sums[0], vd_from_vf_low(pair0));
            sums[1] = vd_add(sums[1], vd_from_vf_high(pair0));
            sums[2] = vd_add(sums[2], vd_from_vf_low(pair1));
            sums[3] = vd_add(sums[3], vd_from_vf_high(pair1));
        } else {
            /* fast: float accumulators, folded into double every FAST_FOLD iterations */
            for (int k = 0; k < UNROLL; k++)
                float_sums[k] = vf_add(float_sums[k], e[k]);
            if (++unfolded == FAST_FOLD) {
                fold_float_sums(float_sums, sums);
                unfolded = 0;
            }
        }
    }
    if (!exact)
        fold_float_sums(float_sums, sums);
    /* remaining whole vectors, then the tail */
    for (; i < n; i += VF_LANES) {
        const int64_t count = n - i < VF_LANES ? n - i : VF_LANES;
        vf xk = count == VF_LANES ? vf_load(x + i)
                                  : vf_load_partial(x + i, count, store ? -INFINITY : row_max);
        vf e = exp_minus_max_f32(xk, negative_max, exact, !store);
        if (store) {
            if (count == VF_LANES)
                vf_store(y + i, e);
            else
                vf_store_partial(y + i, e, count);
        } else {
            vf_mask other = vf_not_equal(xk, max_v);
            e = vf_keep(other, e);
            not_max = vf_count_add(not_max, other);
        }
        sums[0] = vd_add(sums[0], vd_from_vf_low(e));
        sums[1] = vd_add(sums[1], vd_from_vf_high(e));
    }
    partial->max = row_max;
    partial->rest_hi = sum_lanes_f64(sums, UNROLL) * (store ? 1.0 : SUM_UNSCALE);
    partial->rest_lo = 0.0; /* double sums of float terms: error far below float32 ULP */
    if (store) {
        partial->count = 0.0;
    } else {
        int32_t lanes[VF_LANES];
        vf_count_store(lanes, not_max);
        int64_t others = 0;
        for (int j = 0; j < VF_LANES; j++)
            others += lanes[j];
        partial->count = (double)(n - others);
    }
}

static void KERNEL(partial_f32)(const float *x, float *y, int64_t n, int precision, csm_partial *partial)
{
    if (precision == CSM_EXACT) {
        if (y)
            partial_f32_body(x, y, n, partial, 1, 1);
        else
            partial_f32_body(x, y, n, partial, 1, 0);
    } else {
        if (y)
            partial_f32_body(x, y, n, partial, 0, 1);
        else
            partial_f32_body(x, y, n, partial, 0, 0);
    }
}

CSM_INLINE void scale_f32_body(float *y, int64_t n, const csm_row_scale *scale, const int exact)
{
    const float inverse = (float)scale->inverse_hi;
    const vf inverse_hi = vf_set1(inverse);
    const vf inverse_lo = vf_set1((float)((scale->inverse_hi - (double)inverse) + scale->inverse_lo));
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES)
        vf_store(y + i, scale_f32(vf_load(y + i), inverse_hi, inverse_lo, exact));
    if (i < n)
        vf_store_partial(y + i, scale_f32(vf_load_partial(y + i, n - i, 0.0f), inverse_hi, inverse_lo, exact), n - i);
}

static void KERNEL(scale_f32)(float *y, int64_t n, int precision, const csm_row_scale *scale)
{
    if (precision == CSM_EXACT)
        scale_f32_body(y, n, scale, 1);
    else
        scale_f32_body(y, n, scale, 0);
}

CSM_INLINE vf finish_f32_vector(vf x, int operation, const csm_row_scale *scale, const int exact)
{
    const float row_max = (float)scale->max;
    if (operation == CSM_SOFTMAX) {
        const float inverse = (float)scale->inverse_hi;
        vf e = exp_minus_max_f32(x, vf_set1(-row_max), exact, 0);
        return scale_f32(e, vf_set1(inverse),
                         vf_set1((float)((scale->inverse_hi - (double)inverse) + scale->inverse_lo)), exact);
    }
    return log_softmax_f32(x, vf_set1(row_max), vf_set1((float)scale->log_sum), vd_set1(scale->max),
                           vd_set1(scale->log_sum), exact);
}

CSM_INLINE void finish_f32_body(const float *x, float *y, int64_t n, int operation,
                                const csm_row_scale *scale, const int exact)
{
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES)
        vf_store(y + i, finish_f32_vector(vf_load(x + i), operation, scale, exact));
    if (i < n)
        vf_store_partial(y + i, finish_f32_vector(vf_load_partial(x + i, n - i, 0.0f), operation, scale, exact),
                         n - i);
}

static void KERNEL(finish_f32)(const float *x, float *y, int64_t n, int operation, int precision,
                               const csm_row_scale *scale)
{
    if (precision == CSM_EXACT)
        finish_f32_body(x, y, n, operation, scale, 1);
    else
        finish_f32_body(x, y, n, operation, scale, 0);
}

/* ------------------------------------------------------------------------- */
/* float64 element math                                                       */
/* ------------------------------------------------------------------------- */

CSM_INLINE vd difference_f64(vd x, vd negative_max, vd *lo, const int exact)
{
    if (!exact) {
        *lo = vd_zero();
        return vd_add(x, negative_max);
    }
    vd big = vd_min(negative_max, x);
    vd small = vd_max(negative_max, x);
    vd hi = vd_add(big, small);
    *lo = vd_sub(small, vd_sub(hi, big));
    return hi;
}

CSM_INLINE vd exp_f64(vd hi, vd lo, const int exact, const int scaled)
{
    const vd magic_bias = vd_set1(scaled ? MAGIC_BIAS_SCALED_F64 : MAGIC_BIAS_F64);
    if (!exact)
        hi = vd_max(vd_set1(scaled ? EXP_ZERO_SCALED_F64 : EXP_ZERO_F64), hi);
    vd biased = vd_fma(hi, vd_set1(LOG2E_F64), magic_bias);
    vd n = vd_sub(biased, magic_bias);
    vd r = vd_fma(n, vd_set1(-LN2_HI_F64), hi); /* exact */
    vd t = exact ? vd_add(r, vd_fma(n, vd_set1(-LN2_LO_F64), lo)) : vd_fma(n, vd_set1(-LN2_LO_F64), r);
    vd q = vd_fma(vd_set1(EXP_Q_F64[0]), t, vd_set1(EXP_Q_F64[1]));
    for (int k = 2; k < 10; k++)
        q = vd_fma(q, t, vd_set1(EXP_Q_F64[k]));
    vd p = vd_add(vd_set1(1.0), vd_fma(vd_mul(t, t), q, t));
    vd e = vd_mul(p, vd_exponent_from_biased(biased));
    if (!exact)
        return e;
    return vd_keep(vd_not_less(hi, vd_set1(scaled ? EXP_CUTOFF_SCALED_F64 : EXP_CUTOFF_F64)), e);
}

CSM_INLINE vd exp_minus_max_f64(vd x, vd negative_max, const int exact, const int scaled)
{
    vd lo;
    vd hi = difference_f64(x, negative_max, &lo, exact);
    return exp_f64(hi, lo, exact, scaled);
}

CSM_INLINE vd scale_f64(vd e, vd inverse_hi, vd inverse_lo, const int exact)
{
    return exact ? vd_fma(e, inverse_hi, vd_mul(e, inverse_lo)) : vd_mul(e, inverse_hi);
}

/* (x - M) - log_sum; exact: (hi - log_sum) + lo, with lo zeroed for x = -inf
 * (where the Fast2Sum's lo is NaN). */
CSM_INLINE vd log_softmax_f64(vd x, vd negative_max, vd log_sum, const int exact)
{
    vd lo;
    vd hi = difference_f64(x, negative_max, &lo, exact);
    if (!exact)
        return vd_sub(hi, log_sum);
    lo = vd_keep(vd_not_equal(hi, vd_set1(-INFINITY)), lo);
    return vd_add(vd_sub(hi, log_sum), lo);
}

/* Kahan step: sum + compensation carries the running total. */
CSM_INLINE void kahan_add_f64(vd *sum, vd *compensation, vd term)
{
    vd y = vd_sub(term, *compensation);
    vd t = vd_add(*sum, y);
    *compensation = vd_sub(vd_sub(t, *sum), y);
    *sum = t;
}

static double max_f64(const double *x, int64_t n)
{
    vd m[UNROLL];
    for (int k = 0; k < UNROLL; k++)
        m[k] = vd_set1(-INFINITY);
    int64_t i = 0;
    /* main loop */
    for (; i + UNROLL * VD_LANES <= n; i += UNROLL * VD_LANES)
        for (int k = 0; k < UNROLL; k++)
            m[k] = vd_max(m[k], vd_load(x + i + k * VD_LANES));
    for (; i + VD_LANES <= n; i += VD_LANES)
        m[0] = vd_max(m[0], vd_load(x + i));
    /* tail */
    if (i < n)
        m[0] = vd_max(m[0], vd_load_partial(x + i, n - i, -INFINITY));
    for (int k = 1; k < UNROLL; k++)
        m[0] = vd_max(m[0], m[k]);
    return vd_reduce_max(m[0]);
}

/* Folds Kahan (sum, compensation) lane pairs into one double-double in a fixed order. */
static void sum_kahan_lanes(const vd *sums, const vd *compensations, int count, double *hi, double *lo)
{
    double s[VD_LANES], c[VD_LANES];
    double total = 0.0, error = 0.0;
    for (int k = 0; k < count; k++) {
        vd_store(s, sums[k]);
        vd_store(c, compensations[k]);
        for (int j = 0; j < VD_LANES; j++) {
            double t = total + s[j];
            double bb = t - total;
            error += (total - (t - bb)) + (s[j] - bb) - c[j];
            total = t;
        }
    }
    *hi = total + error;
    *lo = error - (*hi - total);
}

/* ------------------------------------------------------------------------- */
/* float64 row kernels                                                        */
/* ------------------------------------------------------------------------- */

CSM_INLINE void partial_f64_body(const double *x, double *y, int64_t n, csm_partial *partial,
                                 const int exact, const int store);

/* Only -inf (and NaN): nothing finite to store against, and y may be x, so
 * report the masked partial (NaN if any NaN) and store zeros. */
static void partial_f64_without_maximum(const double *x, double *y, int64_t n, csm_partial *partial, const int exact)
{
    if (exact)
        partial_f64_body(x, NULL, n, partial, 1, 0);
    else
        partial_f64_body(x, NULL, n, partial, 0, 0);
    for (int64_t i = 0; i < n; i++)
        y[i] = 0;
}

CSM_INLINE void partial_f64_body(const double *x, double *y, int64_t n, csm_partial *partial,
                                 const int exact, const int store)
{
    const double row_max = max_f64(x, n);
    if (store && row_max == -INFINITY) {
        partial_f64_without_maximum(x, y, n, partial, exact);
        return;
    }
    const vd max_v = vd_set1(row_max);
    const vd negative_max = vd_set1(-row_max);
    vd sums[2] = {vd_zero(), vd_zero()};
    vd compensations[2] = {vd_zero(), vd_zero()};
    vd_count not_max = vd_count_zero();
    int64_t i = 0;
    /* main loop: two independent Kahan accumulators (exact) or plain sums (fast) */
    for (; i + 2 * VD_LANES <= n; i += 2 * VD_LANES) {
        for (int k = 0; k < 2; k++) {
            vd xk = vd_load(x + i + k * VD_LANES);
            vd e = exp_minus_max_f64(xk, negative_max, exact, !store);
            if (store) {
                vd_store(y + i + k * VD_LANES, e);
            } else {
                vd_mask other = vd_not_equal(xk, max_v);
                e = vd_keep(other, e);
                not_max = vd_count_add(not_max, other);
            }
            if (exact)
                kahan_add_f64(&sums[k], &compensations[k], e);
            else
                sums[k] = vd_add(sums[k], e);
        }
    }
    /* remaining vector, then the tail */
    for (; i < n; i += VD_LANES) {
        const int64_t count = n - i < VD_LANES ? n - i : VD_LANES;
        vd xk = count == VD_LANES ? vd_load(x + i)
                                  : vd_load_partial(x + i, count, store ? -INFINITY : row_max);
        vd e = exp_minus_max_f64(xk, negative_max, exact, !store);
        if (store) {
            if (count == VD_LANES)
                vd_store(y + i, e);
            else
                vd_store_partial(y + i, e, count);
        } else {
            vd_mask other = vd_not_equal(xk, max_v);
            e = vd_keep(other, e);
            not_max = vd_count_add(not_max, other);
        }
        if (exact)
            kahan_add_f64(&sums[0], &compensations[0], e);
        else
            sums[0] = vd_add(sums[0], e);
    }
    partial->max = row_max;
    sum_kahan_lanes(sums, compensations, 2, &partial->rest_hi, &partial->rest_lo);
    if (!store) {
        partial->rest_hi *= SUM_UNSCALE;
        partial->rest_lo *= SUM_UNSCALE;
    }
    if (store) {
        partial->count = 0.0;
    } else {
        int64_t lanes[VD_LANES];
        vd_count_store(lanes, not_max);
        int64_t others = 0;
        for (int j = 0; j < VD_LANES; j++)
            others += lanes[j];
        partial->count = (double)(n - others);
    }
}

static void KERNEL(partial_f64)(const double *x, double *y, int64_t n, int precision, csm_partial *partial)
{
    if (precision == CSM_EXACT) {
        if (y)
            partial_f64_body(x, y, n, partial, 1, 1);
        else
            partial_f64_body(x, y, n, partial, 1, 0);
    } else {
        if (y)
            partial_f64_body(x, y, n, partial, 0, 1);
        else
            partial_f64_body(x, y, n, partial, 0, 0);
    }
}

CSM_INLINE void scale_f64_body(double *y, int64_t n, const csm_row_scale *scale, const int exact)
{
    const vd inverse_hi = vd_set1(scale->inverse_hi);
    const vd inverse_lo = vd_set1(scale->inverse_lo);
    int64_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES)
        vd_store(y + i, scale_f64(vd_load(y + i), inverse_hi, inverse_lo, exact));
    if (i < n)
        vd_store_partial(y + i, scale_f64(vd_load_partial(y + i, n - i, 0.0), inverse_hi, inverse_lo, exact), n - i);
}

static void KERNEL(scale_f64)(double *y, int64_t n, int precision, const csm_row_scale *scale)
{
    if (precision == CSM_EXACT)
        scale_f64_body(y, n, scale, 1);
    else
        scale_f64_body(y, n, scale, 0);
}

CSM_INLINE vd finish_f64_vector(vd x, int operation, const csm_row_scale *scale, const int exact)
{
    const vd negative_max = vd_set1(-scale->max);
    if (operation == CSM_SOFTMAX)
        return scale_f64(exp_minus_max_f64(x, negative_max, exact, 0), vd_set1(scale->inverse_hi),
                         vd_set1(scale->inverse_lo), exact);
    return log_softmax_f64(x, negative_max, vd_set1(scale->log_sum), exact);
}

CSM_INLINE void finish_f64_body(const double *x, double *y, int64_t n, int operation,
                                const csm_row_scale *scale, const int exact)
{
    int64_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES)
        vd_store(y + i, finish_f64_vector(vd_load(x + i), operation, scale, exact));
    if (i < n)
        vd_store_partial(y + i, finish_f64_vector(vd_load_partial(x + i, n - i, 0.0), operation, scale, exact),
                         n - i);
}

static void KERNEL(finish_f64)(const double *x, double *y, int64_t n, int operation, int precision,
                               const csm_row_scale *scale)
{
    if (precision == CSM_EXACT)
        finish_f64_body(x, y, n, operation, scale, 1);
    else
        finish_f64_body(x, y, n, operation, scale, 0);
}

/* ------------------------------------------------------------------------- */
/* Column tiles: COLUMN_VECTORS vectors of adjacent columns, rows `inner`     */
/* elements apart.  Max, exp-sum and output passes are vertical SIMD; the     */
/* per-column scale comes from the same row_scale.c combine as rows.         */
/* ------------------------------------------------------------------------- */

#define COLUMN_VECTORS 2     /* float32: 64-byte rows per tile */
#define COLUMN_VECTORS_F64 2 /* float64: 64-byte rows per tile (1 vector halves line use; 4 spills) */

/* Per-lane scalars of a log_softmax tile, from per-lane partials. */
typedef struct {
    double max[COLUMN_VECTORS * VF_LANES];
    double log_sum[COLUMN_VECTORS * VF_LANES];
} column_scales;

/* Turns per-lane partials into log-sums (log1p is scalar); writes logsumexp
 * results directly.  Special rows get NaN, which poisons the whole column. */
static void column_scales_from_partials(const csm_partial *partials, int64_t columns, int operation,
                                        column_scales *scales, double *logsumexp)
{
    for (int64_t j = 0; j < columns; j++) {
        csm_row_scale scale;
        csm_row_state state = csm_row_scale_from_partials(&partials[j], 1, operation, &scale);
        if (operation == CSM_LOGSUMEXP) {
            logsumexp[j] = csm_logsumexp_from_state(state, &scale);
            continue;
        }
        if (state != CSM_ROW_FINITE)
            scale.max = scale.log_sum = NAN;
        scales->max[j] = scale.max;
        scales->log_sum[j] = scale.log_sum;
    }
}

CSM_INLINE vf column_load_f32(const float *p, int64_t count, float fill)
{
    return count == VF_LANES ? vf_load(p) : vf_load_partial(p, count, fill);
}

CSM_INLINE void column_store_f32(float *p, vf v, int64_t count)
{
    if (count == VF_LANES)
        vf_store(p, v);
    else
        vf_store_partial(p, v, count);
}

/* full: a whole tile (compile-time vector count and lane counts, so the
 * per-vector state stays in registers); otherwise the tail tile of a slab. */
CSM_INLINE void columns_f32_body(const float *x, float *y, int64_t n, int64_t inner, int64_t columns,
                                 int operation, const int exact, const int full)
{
    const int vectors = full ? COLUMN_VECTORS : (int)((columns + VF_LANES - 1) / VF_LANES);
    int64_t lanes[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++)
        lanes[v] = full ? VF_LANES : columns - v * VF_LANES < VF_LANES ? columns - v * VF_LANES : VF_LANES;
    const int store = operation == CSM_SOFTMAX;

    /* pass 1: column maxima */
    vf max_v[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++)
        max_v[v] = vf_set1(-INFINITY);
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++)
            max_v[v] = vf_max(max_v[v], column_load_f32(x + i * inner + v * VF_LANES, lanes[v], -INFINITY));

    /* pass 2: exp (stored for softmax) and sums in double */
    vf negative_max[COLUMN_VECTORS];
    vd sums[2 * COLUMN_VECTORS];
    vf_count not_max[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++) {
        negative_max[v] = vf_sub(vf_set1(0.0f), max_v[v]);
        sums[2 * v] = sums[2 * v + 1] = vd_zero();
        not_max[v] = vf_count_zero();
    }
    for (int64_t i = 0; i < n; i++) {
        for (int v = 0; v < vectors; v++) {
            vf xk = column_load_f32(x + i * inner + v * VF_LANES, lanes[v], -INFINITY);
            vf e = exp_minus_max_f32(xk, negative_max[v], exact, !store);
            if (store) {
                column_store_f32(y + i * inner + v * VF_LANES, e, lanes[v]);
            } else {
                vf_mask other = vf_not_equal(xk, max_v[v]);
                e = vf_keep(other, e);
                not_max[v] = vf_count_add(not_max[v], other);
            }
            sums[2 * v] = vd_add(sums[2 * v], vd_from_vf_low(e));
            sums[2 * v + 1] = vd_add(sums[2 * v + 1], vd_from_vf_high(e));
        }
    }

    if (store) {
        /* softmax: 1 / sum per lane in double, split into float hi + lo; a NaN
         * sum (a NaN, +inf or only -inf in the column) poisons the column */
        for (int v = 0; v < vectors; v++) {
            vd inverse_low = vd_div(vd_set1(1.0), sums[2 * v]);
            vd inverse_high = vd_div(vd_set1(1.0), sums[2 * v + 1]);
            vf inverse_hi = vf_from_vd_pair(inverse_low, inverse_high);
            vf inverse_lo = vf_from_vd_pair(vd_sub(inverse_low, vd_from_vf_low(inverse_hi)),
                                            vd_sub(inverse_high, vd_from_vf_high(inverse_hi)));
            for (int64_t i = 0; i < n; i++) {
                float *row = y + i * inner + v * VF_LANES;
                column_store_f32(row, scale_f32(column_load_f32(row, lanes[v], 0.0f), inverse_hi, inverse_lo, exact),
                                 lanes[v]);
            }
        }
        return;
    }

    /* log_softmax / logsumexp: per-lane log1p of the non-maximal sum */
    csm_partial partials[COLUMN_VECTORS * VF_LANES];
    for (int v = 0; v < vectors; v++) {
        float maxima[VF_LANES];
        double totals[VF_LANES];
        int32_t others[VF_LANES];
        vf_store(maxima, max_v[v]);
        vd_store(totals, sums[2 * v]);
        vd_store(totals + VD_LANES, sums[2 * v + 1]);
        vf_count_store(others, not_max[v]);
        for (int j = 0; j < lanes[v]; j++) {
            csm_partial *p = &partials[v * VF_LANES + j];
            p->max = maxima[j];
            p->count = (double)(n - others[j]);
            p->rest_hi = totals[j] * SUM_UNSCALE;
            p->rest_lo = 0.0;
        }
    }
    column_scales scales;
    double logsumexp[COLUMN_VECTORS * VF_LANES];
    column_scales_from_partials(partials, columns, operation, &scales, logsumexp);
    if (operation == CSM_LOGSUMEXP) {
        for (int64_t j = 0; j < columns; j++)
            y[j] = (float)logsumexp[j];
        return;
    }

    /* pass 3: log_softmax outputs */
    for (int v = 0; v < vectors; v++) {
        const int64_t base = v * VF_LANES;
        vd max_low = vd_load(scales.max + base), max_high = vd_load(scales.max + base + VD_LANES);
        vd log_low = vd_load(scales.log_sum + base), log_high = vd_load(scales.log_sum + base + VD_LANES);
        vf max_f = vf_from_vd_pair(max_low, max_high), log_f = vf_from_vd_pair(log_low, log_high);
        for (int64_t i = 0; i < n; i++) {
            vf xk = column_load_f32(x + i * inner + base, lanes[v], 0.0f);
            vf out;
            if (exact) {
                vd low = vd_sub(vd_sub(vd_from_vf_low(xk), max_low), log_low);
                vd high = vd_sub(vd_sub(vd_from_vf_high(xk), max_high), log_high);
                out = vf_from_vd_pair(low, high);
            } else {
                out = vf_sub(vf_sub(xk, max_f), log_f);
            }
            column_store_f32(y + i * inner + base, out, lanes[v]);
        }
    }
}

static void KERNEL(columns_f32)(const float *x, float *y, int64_t n, int64_t inner, int64_t columns, int operation,
                                int precision)
{
    const int full = columns == COLUMN_VECTORS * VF_LANES;
    if (precision == CSM_EXACT) {
        if (full)
            columns_f32_body(x, y, n, inner, columns, operation, 1, 1);
        else
            columns_f32_body(x, y, n, inner, columns, operation, 1, 0);
    } else {
        if (full)
            columns_f32_body(x, y, n, inner, columns, operation, 0, 1);
        else
            columns_f32_body(x, y, n, inner, columns, operation, 0, 0);
    }
}

CSM_INLINE vd column_load_f64(const double *p, int64_t count, double fill)
{
    return count == VD_LANES ? vd_load(p) : vd_load_partial(p, count, fill);
}

CSM_INLINE void column_store_f64(double *p, vd v, int64_t count)
{
    if (count == VD_LANES)
        vd_store(p, v);
    else
        vd_store_partial(p, v, count);
}

/* full: a whole tile (compile-time vector count and lane counts, so the
 * per-vector state stays in registers); otherwise the tail tile of a slab. */
CSM_INLINE void columns_f64_body(const double *x, double *y, int64_t n, int64_t inner, int64_t columns,
                                 int operation, const int exact, const int full)
{
    const int vectors = full ? COLUMN_VECTORS_F64 : (int)((columns + VD_LANES - 1) / VD_LANES);
    int64_t lanes[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++)
        lanes[v] = full ? VD_LANES : columns - v * VD_LANES < VD_LANES ? columns - v * VD_LANES : VD_LANES;
    const int store = operation == CSM_SOFTMAX;

    /* pass 1: column maxima */
    vd max_v[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++)
        max_v[v] = vd_set1(-INFINITY);
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++)
            max_v[v] = vd_max(max_v[v], column_load_f64(x + i * inner + v * VD_LANES, lanes[v], -INFINITY));

    /* pass 2: exp (stored for softmax) and Kahan sums */
    vd negative_max[COLUMN_VECTORS_F64], sums[COLUMN_VECTORS_F64], compensations[COLUMN_VECTORS_F64];
    vd_count not_max[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++) {
        negative_max[v] = vd_sub(vd_zero(), max_v[v]);
        sums[v] = compensations[v] = vd_zero();
        not_max[v] = vd_count_zero();
    }
    for (int64_t i = 0; i < n; i++) {
        for (int v = 0; v < vectors; v++) {
            vd xk = column_load_f64(x + i * inner + v * VD_LANES, lanes[v], -INFINITY);
            vd e = exp_minus_max_f64(xk, negative_max[v], exact, !store);
            if (store) {
                column_store_f64(y + i * inner + v * VD_LANES, e, lanes[v]);
            } else {
                vd_mask other = vd_not_equal(xk, max_v[v]);
                e = vd_keep(other, e);
                not_max[v] = vd_count_add(not_max[v], other);
            }
            if (exact)
                kahan_add_f64(&sums[v], &compensations[v], e);
            else
                sums[v] = vd_add(sums[v], e);
        }
    }

    if (store) {
        /* softmax: 1 / (Kahan sum) per lane as a double-double (one Newton
         * step); a NaN sum poisons the column */
        for (int v = 0; v < vectors; v++) {
            vd sum_hi = vd_sub(sums[v], compensations[v]);
            vd sum_lo = vd_sub(vd_zero(), vd_add(compensations[v], vd_sub(sum_hi, sums[v])));
            vd inverse_hi = vd_div(vd_set1(1.0), sum_hi);
            vd residual = vd_sub(vd_fma(vd_sub(vd_zero(), inverse_hi), sum_hi, vd_set1(1.0)), vd_mul(inverse_hi, sum_lo));
            vd inverse_lo = vd_mul(residual, inverse_hi);
            for (int64_t i = 0; i < n; i++) {
                double *row = y + i * inner + v * VD_LANES;
                column_store_f64(row, scale_f64(column_load_f64(row, lanes[v], 0.0), inverse_hi, inverse_lo, exact),
                                 lanes[v]);
            }
        }
        return;
    }

    /* log_softmax / logsumexp: per-lane log1p of the non-maximal sum */
    csm_partial partials[COLUMN_VECTORS_F64 * VD_LANES];
    for (int v = 0; v < vectors; v++) {
        double maxima[VD_LANES], totals[VD_LANES], errors[VD_LANES];
        int64_t others[VD_LANES];
        vd_store(maxima, max_v[v]);
        vd_store(totals, sums[v]);
        vd_store(errors, compensations[v]);
        vd_count_store(others, not_max[v]);
        for (int j = 0; j < lanes[v]; j++) {
            csm_partial *p = &partials[v * VD_LANES + j];
            p->max = maxima[j];
            p->count = (double)(n - others[j]);
            p->rest_hi = totals[j] * SUM_UNSCALE;
            p->rest_lo = -errors[j] * SUM_UNSCALE;
        }
    }
    column_scales scales;
    double logsumexp[COLUMN_VECTORS_F64 * VD_LANES];
    column_scales_from_partials(partials, columns, operation, &scales, logsumexp);
    if (operation == CSM_LOGSUMEXP) {
        for (int64_t j = 0; j < columns; j++)
            y[j] = logsumexp[j];
        return;
    }

    /* pass 3: log_softmax outputs */
    for (int v = 0; v < vectors; v++) {
        const int64_t base = v * VD_LANES;
        vd negative_max = vd_sub(vd_zero(), vd_load(scales.max + base));
        vd log_sum = vd_load(scales.log_sum + base);
        for (int64_t i = 0; i < n; i++) {
            vd xk = column_load_f64(x + i * inner + base, lanes[v], 0.0);
            column_store_f64(y + i * inner + base, log_softmax_f64(xk, negative_max, log_sum, exact), lanes[v]);
        }
    }
}

static void KERNEL(columns_f64)(const double *x, double *y, int64_t n, int64_t inner, int64_t columns,
                                int operation, int precision)
{
    const int full = columns == COLUMN_VECTORS_F64 * VD_LANES;
    if (precision == CSM_EXACT) {
        if (full)
            columns_f64_body(x, y, n, inner, columns, operation, 1, 1);
        else
            columns_f64_body(x, y, n, inner, columns, operation, 1, 0);
    } else {
        if (full)
            columns_f64_body(x, y, n, inner, columns, operation, 0, 1);
        else
            columns_f64_body(x, y, n, inner, columns, operation, 0, 0);
    }
}

/* ------------------------------------------------------------------------- */
/* Short rows: a tile of rows is transposed into a stack buffer where each   */
/* row becomes a column, so the column kernel's vertical SIMD handles a whole */
/* tile of rows with no per-row horizontal reductions or scalar division.    */
/* Each lane's arithmetic is independent of its neighbours, so a row's result */
/* does not depend on which tile (or thread) it lands in.                    */
/* ------------------------------------------------------------------------- */

#define SHORT_ROW_LIMIT 64

/* destination[i * destination_stride + j] = source[j * source_stride + i] for
 * i < columns, j < rows: 8x8 register blocks where the vocabulary has them,
 * element by element for the edges. */
static void transpose_f32(const float *source, int64_t source_stride, float *destination,
                          int64_t destination_stride, int64_t rows, int64_t columns)
{
    int64_t full_rows = 0, full_columns = 0;
#ifdef VF_HAS_TRANSPOSE_8X8
    full_rows = rows / 8 * 8;
    full_columns = columns / 8 * 8;
    for (int64_t j = 0; j < full_rows; j += 8)
        for (int64_t i = 0; i < full_columns; i += 8)
            vf_transpose_8x8(source + j * source_stride + i, source_stride, destination + i * destination_stride + j,
                             destination_stride);
#endif
    for (int64_t j = 0; j < rows; j++)
        for (int64_t i = j < full_rows ? full_columns : 0; i < columns; i++)
            destination[i * destination_stride + j] = source[j * source_stride + i];
}

static void KERNEL(rows_f32)(const float *x, float *y, int64_t rows, int64_t n, int operation, int precision)
{
    enum { TILE = COLUMN_VECTORS * VF_LANES };
    float buffer[SHORT_ROW_LIMIT * TILE];
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        transpose_f32(x + first * n, n, buffer, TILE, count, n);
        float *destination = operation == CSM_LOGSUMEXP ? y + first : buffer;
        KERNEL(columns_f32)(buffer, destination, n, TILE, count, operation, precision);
        if (operation != CSM_LOGSUMEXP)
            transpose_f32(buffer, TILE, y + first * n, n, n, count);
    }
}

static void KERNEL(rows_f64)(const double *x, double *y, int64_t rows, int64_t n, int operation, int precision)
{
    enum { TILE = COLUMN_VECTORS_F64 * VD_LANES };
    double buffer[SHORT_ROW_LIMIT * TILE];
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < n; i++)
                buffer[i * TILE + j] = x[(first + j) * n + i];
        double *destination = operation == CSM_LOGSUMEXP ? y + first : buffer;
        KERNEL(columns_f64)(buffer, destination, n, TILE, count, operation, precision);
        if (operation != CSM_LOGSUMEXP)
            for (int64_t j = 0; j < count; j++)
                for (int64_t i = 0; i < n; i++)
                    y[(first + j) * n + i] = buffer[i * TILE + j];
    }
}

static const csm_kernel_table KERNEL(table) = {
    .name = CSM_STRINGIFY(CSM_ISA_SUFFIX),
    .partial_f32 = KERNEL(partial_f32),
    .partial_f64 = KERNEL(partial_f64),
    .scale_f32 = KERNEL(scale_f32),
    .scale_f64 = KERNEL(scale_f64),
    .finish_f32 = KERNEL(finish_f32),
    .finish_f64 = KERNEL(finish_f64),
    .columns_f32 = KERNEL(columns_f32),
    .columns_f64 = KERNEL(columns_f64),
    .rows_f32 = KERNEL(rows_f32),
    .rows_f64 = KERNEL(rows_f64),
    .column_tile_f32 = COLUMN_VECTORS * VF_LANES,
    .column_tile_f64 = COLUMN_VECTORS_F64 * VD_LANES,
    .short_row_limit = SHORT_ROW_LIMIT,
};
