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
 *      one rounding; log_softmax is (x - C_hi) - C_lo with C = M + log_sum
 *      split into hi + lo (log_softmax_shifted_f32), or with a temperature
 *      formed in double (float32) / as (hi - log_sum) + lo (float64).
 * Float32 rows skip step 1 altogether (exp_from_reference_f32): exp(x - M)
 * is rebuilt from the exact reduction of x itself and a per-row exp(M's
 * remainder), which costs fewer operations than carrying x - M exactly.
 * Measured max error: see TOLERANCES in tests/reference.py.
 * Fast mode drops step 1's correction (d rounded once, the classical
 * algorithm) and sums float32 terms in float32 for up to 16 steps per lane;
 * its float32 softmax rows take exp_from_reference_f32 too (fewer
 * operations than the classical exp, and no less accurate); its sums without a
 * store add every term unmasked.
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
#define LN2_HI_F64 0x1.62E42FEE00000p-1              /* 32 bits: n * LN2_HI_F64 exact for |n| < 2^21 */
#define LN2_LO_F64 0x1.A39EF35793C76p-33
#define EXP_CUTOFF_F64 -0x1.6232BDD7ABCD2p+9                /* ln of the smallest normal double */
#define MAGIC_BIAS_SCALED_F64 0x1.8000000000000p52 + 1087.0 /* 1023 + 64 */
#define EXP_CUTOFF_SCALED_F64 -0x1.786100D6A6071p+9         /* ln(2^-1086): n + 1087 stays >= 1 */
#define EXP_ZERO_F64 -708.9                                 /* n = -1023 */
#define EXP_ZERO_SCALED_F64 -753.4                          /* n = -1087 */
/* exp(t) = 1 + t + t^2 q(t), q degree 9 (0.07 ULP truncation) */
static const double EXP_Q_F64[10] = {
    0x1.AF38A9B0EC855p-26, 0x1.289185613A3D6p-22, 0x1.71DE0DAE63BB3p-19, 0x1.A019B90D2AE7Ap-16, 0x1.A01A01A7C41D5p-13,
    0x1.6C16C1788BD90p-10, 0x1.11111111109B3p-7,  0x1.5555555553D63p-5,  0x1.5555555555556p-3,  0x1.0000000000001p-1,
};

#define UNROLL 4 /* vectors per main-loop iteration */

/* Column tiles walk rows `inner` elements apart: a new page per row, which
 * the hardware prefetchers do not follow.  The gradient tiles' first pass,
 * which has little arithmetic to hide the misses behind, asks for the rows
 * PREFETCH_ROWS ahead itself (float32 axis 0 of (1000, 1000): 0.66 ->
 * 0.46 ms; the softmax tiles measured no gain). */
#define PREFETCH_ROWS 16
/* Rows are contiguous and so are a long row's blocks: the exp pass of one asks
 * for the x that follows it (the next row or block), so the next max pass
 * reads from cache while this pass's arithmetic hides the requests (float32
 * (1000, 1000): 0.30 -> 0.27 ms, (8, 128256): 0.27 -> 0.23 ms; no gain for
 * rows under 1 KiB).  A prefetch past the array's end is harmless. */
#define PREFETCH_NEXT_MIN 256 /* elements */
#define CACHE_LINE_BYTES 64
#if defined(__GNUC__) || defined(__clang__)
#define CSM_PREFETCH(address) __builtin_prefetch(address)
#else
#define CSM_PREFETCH(address) ((void)(address))
#endif

/* Asks for the `bytes` at distance `ahead` from p, one request per line (the
 * address is formed as an integer: it may lie past the array, which a
 * prefetch never touches). */
CSM_INLINE void prefetch_next(const void *p, int64_t ahead, int64_t bytes)
{
    for (int64_t k = 0; k < bytes; k += CACHE_LINE_BYTES)
        CSM_PREFETCH((const void *)((uintptr_t)p + (uintptr_t)(ahead + k)));
}

/* With a temperature, x - M can overflow while (x - M) / T does not only when
 * M is this large (x >= -max): such rows go to the scalar kernel, which
 * handles them, and the vector loops need no per-element check. */
#define TEMPERED_HUGE_F32 0x1p100f
#define TEMPERED_HUGE_F64 0x1p1000

/* Calls BODY(exact, a, b, c) with every flag (0 or 1) a compile-time
 * constant, so each variant is specialised (no run-time flags in loops). */
#define SPECIALISE(BODY, exact, a, b, c)                                                                               \
    do {                                                                                                               \
        switch ((exact) | (a) << 1 | (b) << 2 | (c) << 3) {                                                            \
        case 0:                                                                                                        \
            BODY(0, 0, 0, 0);                                                                                          \
            break;                                                                                                     \
        case 1:                                                                                                        \
            BODY(1, 0, 0, 0);                                                                                          \
            break;                                                                                                     \
        case 2:                                                                                                        \
            BODY(0, 1, 0, 0);                                                                                          \
            break;                                                                                                     \
        case 3:                                                                                                        \
            BODY(1, 1, 0, 0);                                                                                          \
            break;                                                                                                     \
        case 4:                                                                                                        \
            BODY(0, 0, 1, 0);                                                                                          \
            break;                                                                                                     \
        case 5:                                                                                                        \
            BODY(1, 0, 1, 0);                                                                                          \
            break;                                                                                                     \
        case 6:                                                                                                        \
            BODY(0, 1, 1, 0);                                                                                          \
            break;                                                                                                     \
        case 7:                                                                                                        \
            BODY(1, 1, 1, 0);                                                                                          \
            break;                                                                                                     \
        case 8:                                                                                                        \
            BODY(0, 0, 0, 1);                                                                                          \
            break;                                                                                                     \
        case 9:                                                                                                        \
            BODY(1, 0, 0, 1);                                                                                          \
            break;                                                                                                     \
        case 10:                                                                                                       \
            BODY(0, 1, 0, 1);                                                                                          \
            break;                                                                                                     \
        case 11:                                                                                                       \
            BODY(1, 1, 0, 1);                                                                                          \
            break;                                                                                                     \
        case 12:                                                                                                       \
            BODY(0, 0, 1, 1);                                                                                          \
            break;                                                                                                     \
        case 13:                                                                                                       \
            BODY(1, 0, 1, 1);                                                                                          \
            break;                                                                                                     \
        case 14:                                                                                                       \
            BODY(0, 1, 1, 1);                                                                                          \
            break;                                                                                                     \
        default:                                                                                                       \
            BODY(1, 1, 1, 1);                                                                                          \
            break;                                                                                                     \
        }                                                                                                              \
    } while (0)

/* 1 / temperature in lanes (hi + lo); (1, 0) without a temperature. */
typedef struct {
    vf hi, lo;
} vf_inverse;
typedef struct {
    vd hi, lo;
} vd_inverse;

static vf_inverse inverse_f32(const csm_temperature *temperature)
{
    vf_inverse inverse = {vf_set1(1.0f), vf_set1(0.0f)};
    if (temperature) {
        /* 1/T beyond float's range is clamped: the products it scales are far outside exp's range then. */
        const double wide = temperature->inverse_hi < 0x1.FFFFFEp127 ? temperature->inverse_hi : 0x1.FFFFFEp127;
        const float hi = (float)wide;
        inverse.hi = vf_set1(hi);
        inverse.lo =
            vf_set1(wide == temperature->inverse_hi ? (float)((wide - (double)hi) + temperature->inverse_lo) : 0.0f);
    }
    return inverse;
}

static vd_inverse inverse_f64(const csm_temperature *temperature)
{
    vd_inverse inverse = {vd_set1(1.0), vd_zero()};
    if (temperature) {
        inverse.hi = vd_set1(temperature->inverse_hi);
        inverse.lo = vd_set1(temperature->inverse_lo);
    }
    return inverse;
}

/* Masks: lane j takes part where where[offset + j] != 0.  Partial forms read
 * only `count` bytes; the lanes past them are true, so that a tail's fill
 * value is kept. */
CSM_INLINE vf_mask where_f32(const uint8_t *where, int64_t offset, int64_t count)
{
    if (count == VF_LANES)
        return vf_mask_from_bytes(where + offset);
    uint8_t bytes[VF_LANES];
    for (int j = 0; j < VF_LANES; j++)
        bytes[j] = j < count ? where[offset + j] : 1;
    return vf_mask_from_bytes(bytes);
}

CSM_INLINE vd_mask where_f64(const uint8_t *where, int64_t offset, int64_t count)
{
    if (count == VD_LANES)
        return vd_mask_from_bytes(where + offset);
    uint8_t bytes[VD_LANES];
    for (int j = 0; j < VD_LANES; j++)
        bytes[j] = j < count ? where[offset + j] : 1;
    return vd_mask_from_bytes(bytes);
}

/* x with its excluded lanes read as -inf. */
CSM_INLINE vf masked_f32(vf x, const uint8_t *where, int64_t offset, int64_t count, const int masked)
{
    return masked ? vf_select(where_f32(where, offset, count), x, vf_set1(-INFINITY)) : x;
}

CSM_INLINE vd masked_f64(vd x, const uint8_t *where, int64_t offset, int64_t count, const int masked)
{
    return masked ? vd_select(where_f64(where, offset, count), x, vd_set1(-INFINITY)) : x;
}

/* ------------------------------------------------------------------------- */
/* float32 element math                                                       */
/* ------------------------------------------------------------------------- */

/* (x - M) / T as hi + lo (exact) or hi alone (fast).  x goes second into
 * min/max so a NaN x propagates.  Exact: x - M by Fast2Sum, then the pair
 * times 1/T keeping the product's rounding error (an fma) in lo. */
CSM_INLINE vf difference_f32(vf x, vf negative_max, vf *lo, const int exact, const int tempered, vf_inverse inverse)
{
    if (!exact) {
        *lo = vf_set1(0.0f);
        vf d = vf_add(x, negative_max);
        return tempered ? vf_mul(d, inverse.hi) : d;
    }
    vf big = vf_min(negative_max, x); /* |big| >= |small| because x <= M */
    vf small = vf_max(negative_max, x);
    vf hi = vf_add(big, small);
    *lo = vf_sub(small, vf_sub(hi, big));
    if (!tempered)
        return hi;
    vf product = vf_mul(hi, inverse.hi);
    vf error = vf_fms(hi, inverse.hi, product); /* exact */
    *lo = vf_fma(hi, inverse.lo, vf_fma(*lo, inverse.hi, error));
    return product;
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
    q = vf_fma(q, t, vf_set1(1.0f));
    vf p = vf_fma(q, t, vf_set1(1.0f)); /* Horner to the end: one op fewer than 1 + t + t^2 q */
    vf e = vf_mul(p, vf_exponent_from_biased(biased));
    if (!exact)
        return e;
    /* exact: lo is NaN for x = -inf, so mask rather than clamp */
    return vf_keep(vf_not_less(hi, vf_set1(scaled ? EXP_CUTOFF_SCALED_F32 : EXP_CUTOFF_F32)), e);
}

CSM_INLINE vf exp_minus_max_f32(vf x, vf negative_max, const int exact, const int scaled, const int tempered,
                                vf_inverse inverse)
{
    vf lo;
    vf hi = difference_f32(x, negative_max, &lo, exact, tempered, inverse);
    return exp_f32(hi, lo, exact, scaled);
}

/* Exact float32 exp(x - M) without forming x - M (whose rounding error step
 * 1 must otherwise recover with a Fast2Sum): with M = m ln2 + d (m an
 * integer, |d| <= ln2/2), exp(x - M) = exp(x - m ln2) exp(-d), and
 * exp(x - m ln2) = 2^(n - m + 1) (exp(r) / 2), where n = round(x / ln2) and
 * r = x - n ln2 is Cody-Waite's reduction of x itself, exact as in step 2.
 * The magic bias carries -m + 1 (and the sums' 2^64), so its bits still give
 * the power of two; the "+ 1" keeps that power normal for every result the
 * cutoff keeps.  Rows are summed relative to the reference m ln2: the
 * softmax store path reports it as the partial's max (exp(-d) cancels
 * between terms and sum), the masked sums multiply their double sum by
 * exp(-d) once, after the loop, so that exp sits off the row's critical
 * path.  n ln2_lo is exact enough while |x| < 2^15 (OFFSET_EXP_LIMIT_F32);
 * larger rows use step 1. */
#define OFFSET_EXP_LIMIT_F32 0x1p15f

typedef struct {
    vf magic_bias;
    vf floor;           /* (m - 128) ln2 (scaled: m - 192): biased's low bits are 0 there */
    double reference;   /* m ln2 */
    double rest_factor; /* masked sums: exp(-d) 2^-64, relative to M */
} vf_exp_offset;

/* m = round(M / ln2).  unmasked: the terms of a partial relative to m ln2
 * (the softmax store path, fast mode's sums); else the masked sums' terms,
 * times 2^64. */
static vf_exp_offset exp_offset_f32(float row_max, const int unmasked)
{
    const double m = nearbyint((double)row_max * 0x1.71547652B82FEp+0);
    vf_exp_offset offset;
    offset.magic_bias = vf_set1((float)((double)(unmasked ? MAGIC_BIAS_F32 : MAGIC_BIAS_SCALED_F32) + 1.0 - m));
    offset.floor = vf_set1((float)((m - (unmasked ? 128.0 : 128.0 + SUM_SCALE_EXPONENT)) * (LN2_HI_F64 + LN2_LO_F64)));
    offset.reference = m * LN2_HI_F64 + m * LN2_LO_F64;
    offset.rest_factor = 1.0;
    if (!unmasked) {
        const double d = ((double)row_max - m * LN2_HI_F64) - m * LN2_LO_F64; /* m * LN2_HI_F64 exact: |m| < 2^17 */
        offset.rest_factor = exp(-d) * SUM_UNSCALE;
    }
    return offset;
}

/* exp(x - m ln2): Cody-Waite's reduction of x itself, t = x - n ln2 (n ln2_hi
 * exact, n and the power of two in the bits of biased), exp(t) / 2 by Horner
 * on halved coefficients (halving is exact), times 2^(n - m + 1) where that
 * power is a normal number (results at most 4x below the normal range, which
 * may stay as subnormals).  Lower x is raised to the floor, where biased's low
 * bits are 0 and so the power reads as +0: those terms, x = -inf among them,
 * are 0 with one max instead of a compare and a blend; max(floor, x) keeps a
 * NaN x.  Terms up to sqrt(2); fewer operations than exp_minus_max_f32's fast
 * mode. */
CSM_INLINE vf exp_from_reference_f32(vf x, const vf_exp_offset *offset)
{
    x = vf_max(offset->floor, x);
    vf biased = vf_fma(x, vf_set1(LOG2E_F32), offset->magic_bias);
    vf n = vf_sub(biased, offset->magic_bias);
    vf t = vf_fma(n, vf_set1(-LN2_LO_F32), vf_fma(n, vf_set1(-LN2_HI_F32), x));
    vf q = vf_fma(vf_set1(0.5f * EXP_Q4_F32), t, vf_set1(0.5f * EXP_Q3_F32));
    q = vf_fma(q, t, vf_set1(0.5f * EXP_Q2_F32));
    q = vf_fma(q, t, vf_set1(0.5f * EXP_Q1_F32));
    q = vf_fma(q, t, vf_set1(0.5f * EXP_Q0_F32));
    q = vf_fma(q, t, vf_set1(0.5f));
    vf e = vf_fma(q, t, vf_set1(0.5f));
    return vf_mul(e, vf_exponent_from_biased(biased));
}

/* e / sum with one rounding (exact) or e * rounded(1/sum) (fast). */
CSM_INLINE vf scale_f32(vf e, vf inverse_hi, vf inverse_lo, const int exact)
{
    return exact ? vf_fma(e, inverse_hi, vf_mul(e, inverse_lo)) : vf_mul(e, inverse_hi);
}

/* (x - M) / T - log_sum: exact in double, rounded once; fast in float. */
CSM_INLINE vf log_softmax_f32(vf x, vf max_f, vf log_sum_f, vd max_d, vd log_sum_d, const int exact, const int tempered,
                              vf_inverse inverse, vd inverse_d)
{
    if (!exact) {
        vf d = vf_sub(x, max_f);
        return vf_sub(tempered ? vf_mul(d, inverse.hi) : d, log_sum_f);
    }
    vd low = vd_sub(vd_from_vf_low(x), max_d), high = vd_sub(vd_from_vf_high(x), max_d);
    if (tempered) {
        low = vd_mul(low, inverse_d);
        high = vd_mul(high, inverse_d);
    }
    return vf_from_vd_pair(vd_sub(low, log_sum_d), vd_sub(high, log_sum_d));
}

CSM_INLINE float max_f32(const float *x, const uint8_t *where, int64_t n, const int masked)
{
    vf m[UNROLL];
    for (int k = 0; k < UNROLL; k++)
        m[k] = vf_set1(-INFINITY);
    int64_t i = 0;
    /* main loop */
    for (; i + UNROLL * VF_LANES <= n; i += UNROLL * VF_LANES)
        for (int k = 0; k < UNROLL; k++)
            m[k] = vf_max(m[k], masked_f32(vf_load(x + i + k * VF_LANES), where, i + k * VF_LANES, VF_LANES, masked));
    for (; i + VF_LANES <= n; i += VF_LANES)
        m[0] = vf_max(m[0], masked_f32(vf_load(x + i), where, i, VF_LANES, masked));
    /* tail */
    if (i < n)
        m[0] = vf_max(m[0], masked_f32(vf_load_partial(x + i, n - i, -INFINITY), where, i, n - i, masked));
    for (int k = 1; k < UNROLL; k++)
        m[0] = vf_max(m[0], m[k]);
    return vf_reduce_max(m[0]);
}

/* Adds the lanes of `count` (1, 2 or 4) double vectors pairwise in a fixed
 * tree order: a row's last step is log2(lanes) adds deep, not a serial chain,
 * and stays in registers (a trip through memory stalls store forwarding). */
CSM_INLINE double sum_lanes_f64(const vd *vectors, int count)
{
    vd v[4];
    for (int k = 0; k < count; k++)
        v[k] = vectors[k];
    for (int half = count / 2; half >= 1; half /= 2)
        for (int k = 0; k < half; k++)
            v[k] = vd_add(v[k], v[k + half]);
    return vd_reduce_add_halves(v[0]);
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

/* y = x where included, `fill` where excluded (y may be x). */
static void fill_excluded_f32(const float *x, const uint8_t *where, float *y, int64_t n, float fill)
{
    const vf fill_v = vf_set1(fill);
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES)
        vf_store(y + i, vf_select(where_f32(where, i, VF_LANES), vf_load(x + i), fill_v));
    if (i < n)
        vf_store_partial(y + i, vf_select(where_f32(where, i, n - i), vf_load_partial(x + i, n - i, 0.0f), fill_v),
                         n - i);
}

static void KERNEL(mask_f32)(const float *x, const uint8_t *where, float *y, int64_t n)
{
    fill_excluded_f32(x, where, y, n, -INFINITY);
}

static void KERNEL(partial_f32)(const float *x, const uint8_t *where, float *y, int64_t n, float row_max, int precision,
                                const csm_temperature *temperature, csm_partial *partial);

CSM_INLINE void partial_f32_sums(const float *x, const uint8_t *where, float *y, int64_t n, float row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int counted, const int masked, const int tempered,
                                 const int offset);

/* store: y = exp((x - M) / T), plain sum.  !store: masked sum of the
 * non-maximal terms plus the count of maxima (tail lanes are filled with M,
 * which counts nowhere: count is n minus the non-maximal lanes). */
CSM_INLINE void partial_f32_body(const float *x, const uint8_t *where, float *y, int64_t n, float row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int masked, const int tempered)
{
    if (tempered && exact && row_max > TEMPERED_HUGE_F32) {
        csm_kernels_scalar.partial_f32(x, where, y, n, row_max, CSM_EXACT, temperature, partial);
        return;
    }
    if (store && row_max == -INFINITY) {
        /* Only -inf (and NaN, or nothing included): nothing finite to store
         * against, and y may be x, so report the masked partial and store zeros. */
        KERNEL(partial_f32)(x, where, NULL, n, row_max, exact ? CSM_EXACT : CSM_FAST, temperature, partial);
        for (int64_t i = 0; i < n; i++)
            y[i] = 0;
        return;
    }
    /* fast mode sums every term of a finite row, unmasked (kernel_table.h),
     * with the classical exp: the maximum's term is then exactly 1 (a row of
     * one element has log_softmax 0) */
    const int counted = !store && (exact || !isfinite(row_max));
    if (!tempered && fabsf(row_max) < OFFSET_EXP_LIMIT_F32 && (store || counted)) {
        if (store)
            partial_f32_sums(x, where, y, n, row_max, temperature, partial, exact, 1, 0, masked, tempered, 1);
        else
            partial_f32_sums(x, where, y, n, row_max, temperature, partial, exact, 0, 1, masked, tempered, 1);
    } else if (counted) {
        partial_f32_sums(x, where, y, n, row_max, temperature, partial, exact, 0, 1, masked, tempered, 0);
    } else {
        partial_f32_sums(x, where, y, n, row_max, temperature, partial, exact, store, 0, masked, tempered, 0);
    }
}

/* partial_f32_body's passes after the max; counted: a masked partial (the
 * maxima counted apart); offset: exp_from_reference_f32. */
CSM_INLINE void partial_f32_sums(const float *x, const uint8_t *where, float *y, int64_t n, float row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int counted, const int masked, const int tempered,
                                 const int offset)
{
    const vf_inverse inverse = inverse_f32(temperature);
    const vf max_v = vf_set1(row_max);
    const vf negative_max = vf_set1(-row_max);
    const vf_exp_offset exp_offset =
        offset ? exp_offset_f32(row_max, !counted) : (vf_exp_offset){max_v, max_v, 0.0, store ? 1.0 : SUM_UNSCALE};
    vd sums[UNROLL] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    vf float_sums[UNROLL] = {vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f), vf_set1(0.0f)};
    int unfolded = 0;
    vf_count not_max = vf_count_zero();
    int64_t i = 0;
    /* main loop: exact adds pairs of vectors in float32, then in double */
    for (; i + UNROLL * VF_LANES <= n; i += UNROLL * VF_LANES) {
        vf e[UNROLL];
        if (n >= PREFETCH_NEXT_MIN)
            prefetch_next(x + i, n * (int64_t)sizeof(float), UNROLL * VF_LANES * (int64_t)sizeof(float));
        for (int k = 0; k < UNROLL; k++) {
            vf xk = masked_f32(vf_load(x + i + k * VF_LANES), where, i + k * VF_LANES, VF_LANES, masked);
            e[k] = offset ? exp_from_reference_f32(xk, &exp_offset)
                          : exp_minus_max_f32(xk, negative_max, exact, !store, tempered, inverse);
            if (store) {
                vf_store(y + i + k * VF_LANES, e[k]);
            } else if (counted) {
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
        vf xk = count == VF_LANES ? vf_load(x + i) : vf_load_partial(x + i, count, counted ? row_max : -INFINITY);
        xk = masked_f32(xk, where, i, count, masked);
        vf e = offset ? exp_from_reference_f32(xk, &exp_offset)
                      : exp_minus_max_f32(xk, negative_max, exact, !store, tempered, inverse);
        if (store) {
            if (count == VF_LANES)
                vf_store(y + i, e);
            else
                vf_store_partial(y + i, e, count);
        } else if (counted) {
            vf_mask other = vf_not_equal(xk, max_v);
            e = vf_keep(other, e);
            not_max = vf_count_add(not_max, other);
        }
        sums[0] = vd_add(sums[0], vd_from_vf_low(e));
        sums[1] = vd_add(sums[1], vd_from_vf_high(e));
    }
    /* the reference m ln2 as a double: its rounding shifts a long row's block factors by < 2^-38 */
    partial->max = offset && !counted ? exp_offset.reference : row_max;
    partial->rest_hi = sum_lanes_f64(sums, UNROLL) * exp_offset.rest_factor;
    partial->rest_lo = 0.0; /* double sums of float terms: error far below float32 ULP */
    if (!counted) {
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

static float KERNEL(max_f32)(const float *x, const uint8_t *where, int64_t n)
{
    return where ? max_f32(x, where, n, 1) : max_f32(x, NULL, n, 0);
}

static void KERNEL(partial_f32)(const float *x, const uint8_t *where, float *y, int64_t n, float row_max, int precision,
                                const csm_temperature *temperature, csm_partial *partial)
{
#define PARTIAL_F32(exact, store, masked, tempered)                                                                    \
    partial_f32_body(x, where, y, n, row_max, temperature, partial, exact, store, masked, tempered)
    SPECIALISE(PARTIAL_F32, precision == CSM_EXACT, y != NULL, where != NULL, temperature != NULL);
#undef PARTIAL_F32
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

/* Untempered exact log_softmax in two float subtractions, y = (x - C_hi) -
 * C_lo with C = M + log_sum as hi + lo: y = -(|x - M| + log_sum) has no
 * cancellation, x - C_hi is exact wherever y is small next to C (Sterbenz),
 * so the result is rounded at most twice (<= 1 ULP) and C_lo's own rounding
 * stays far below y's ULP. */
CSM_INLINE vf log_softmax_shifted_f32(vf x, const csm_row_scale *scale)
{
    const float shift_hi = (float)(scale->max + scale->log_sum);
    const float shift_lo = (float)((scale->max - (double)shift_hi) + scale->log_sum); /* M - C_hi exact in double */
    return vf_sub(vf_sub(x, vf_set1(shift_hi)), vf_set1(shift_lo));
}

CSM_INLINE vf finish_f32_vector(vf x, int operation, const csm_row_scale *scale, const int exact, const int tempered,
                                vf_inverse inverse, vd inverse_d)
{
    const float row_max = (float)scale->max;
    if (operation == CSM_SOFTMAX) {
        const float inverse_sum = (float)scale->inverse_hi;
        vf e = exp_minus_max_f32(x, vf_set1(-row_max), exact, 0, tempered, inverse);
        return scale_f32(e, vf_set1(inverse_sum),
                         vf_set1((float)((scale->inverse_hi - (double)inverse_sum) + scale->inverse_lo)), exact);
    }
    if (exact && !tempered)
        return log_softmax_shifted_f32(x, scale);
    return log_softmax_f32(x, vf_set1(row_max), vf_set1((float)scale->log_sum), vd_set1(scale->max),
                           vd_set1(scale->log_sum), exact, tempered, inverse, inverse_d);
}

CSM_INLINE void finish_f32_body(const float *x, const uint8_t *where, float *y, int64_t n, int operation,
                                const csm_temperature *temperature, const csm_row_scale *scale, const int exact,
                                const int masked, const int tempered)
{
    if (tempered && exact && scale->max > TEMPERED_HUGE_F32) {
        csm_kernels_scalar.finish_f32(x, where, y, n, operation, CSM_EXACT, temperature, scale);
        return;
    }
    /* A copy nothing can alias: intrinsic stores may alias anything, so loads
     * through `scale` would be repeated (with the shift's arithmetic) per vector. */
    const csm_row_scale row = *scale;
    const vf_inverse inverse = inverse_f32(temperature);
    const vd inverse_d = vd_set1(temperature ? temperature->inverse_hi : 1.0);
    int64_t i = 0;
    for (; i + VF_LANES <= n; i += VF_LANES) {
        vf xk = masked_f32(vf_load(x + i), where, i, VF_LANES, masked);
        vf_store(y + i, finish_f32_vector(xk, operation, &row, exact, tempered, inverse, inverse_d));
    }
    if (i < n) {
        vf xk = masked_f32(vf_load_partial(x + i, n - i, 0.0f), where, i, n - i, masked);
        vf_store_partial(y + i, finish_f32_vector(xk, operation, &row, exact, tempered, inverse, inverse_d), n - i);
    }
}

static void KERNEL(finish_f32)(const float *x, const uint8_t *where, float *y, int64_t n, int operation, int precision,
                               const csm_temperature *temperature, const csm_row_scale *scale)
{
#define FINISH_F32(exact, masked, tempered, unused)                                                                    \
    finish_f32_body(x, where, y, n, operation, temperature, scale, exact, masked, tempered)
    SPECIALISE(FINISH_F32, precision == CSM_EXACT, where != NULL, temperature != NULL, 0);
#undef FINISH_F32
}

/* ------------------------------------------------------------------------- */
/* float64 element math                                                       */
/* ------------------------------------------------------------------------- */

CSM_INLINE vd difference_f64(vd x, vd negative_max, vd *lo, const int exact, const int tempered, vd_inverse inverse)
{
    if (!exact) {
        *lo = vd_zero();
        vd d = vd_add(x, negative_max);
        return tempered ? vd_mul(d, inverse.hi) : d;
    }
    vd big = vd_min(negative_max, x);
    vd small = vd_max(negative_max, x);
    vd hi = vd_add(big, small);
    *lo = vd_sub(small, vd_sub(hi, big));
    if (!tempered)
        return hi;
    vd product = vd_mul(hi, inverse.hi);
    vd error = vd_fms(hi, inverse.hi, product); /* exact */
    *lo = vd_fma(hi, inverse.lo, vd_fma(*lo, inverse.hi, error));
    return product;
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

CSM_INLINE vd exp_minus_max_f64(vd x, vd negative_max, const int exact, const int scaled, const int tempered,
                                vd_inverse inverse)
{
    vd lo;
    vd hi = difference_f64(x, negative_max, &lo, exact, tempered, inverse);
    return exp_f64(hi, lo, exact, scaled);
}

CSM_INLINE vd scale_f64(vd e, vd inverse_hi, vd inverse_lo, const int exact)
{
    return exact ? vd_fma(e, inverse_hi, vd_mul(e, inverse_lo)) : vd_mul(e, inverse_hi);
}

/* (x - M) / T - log_sum; exact: (hi - log_sum) + lo, with lo zeroed for
 * x = -inf (where the Fast2Sum's lo is NaN). */
CSM_INLINE vd log_softmax_f64(vd x, vd negative_max, vd log_sum, const int exact, const int tempered,
                              vd_inverse inverse)
{
    vd lo;
    vd hi = difference_f64(x, negative_max, &lo, exact, tempered, inverse);
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

CSM_INLINE double max_f64(const double *x, const uint8_t *where, int64_t n, const int masked)
{
    vd m[UNROLL];
    for (int k = 0; k < UNROLL; k++)
        m[k] = vd_set1(-INFINITY);
    int64_t i = 0;
    /* main loop */
    for (; i + UNROLL * VD_LANES <= n; i += UNROLL * VD_LANES)
        for (int k = 0; k < UNROLL; k++)
            m[k] = vd_max(m[k], masked_f64(vd_load(x + i + k * VD_LANES), where, i + k * VD_LANES, VD_LANES, masked));
    for (; i + VD_LANES <= n; i += VD_LANES)
        m[0] = vd_max(m[0], masked_f64(vd_load(x + i), where, i, VD_LANES, masked));
    /* tail */
    if (i < n)
        m[0] = vd_max(m[0], masked_f64(vd_load_partial(x + i, n - i, -INFINITY), where, i, n - i, masked));
    for (int k = 1; k < UNROLL; k++)
        m[0] = vd_max(m[0], m[k]);
    return vd_reduce_max(m[0]);
}

/* Folds Kahan (sum, compensation) lane pairs (count 1 or 2 vectors) into one
 * double-double: TwoSum pairwise in a fixed tree order (error-free at every
 * level, log2(lanes) deep), the rounding errors and compensations summed apart. */
static void sum_kahan_lanes(const vd *sums, const vd *compensations, int count, double *hi, double *lo)
{
    double s[2 * VD_LANES], e[2 * VD_LANES];
    for (int k = 0; k < count; k++) {
        vd_store(s + k * VD_LANES, sums[k]);
        vd_store(e + k * VD_LANES, compensations[k]);
    }
    for (int j = 0; j < count * VD_LANES; j++)
        e[j] = -e[j];
    for (int width = count * VD_LANES / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++) {
            const double a = s[j], b = s[j + width];
            const double t = a + b, bb = t - a;
            e[j] += e[j + width] + ((a - (t - bb)) + (b - bb));
            s[j] = t;
        }
    *hi = s[0] + e[0];
    *lo = e[0] - (*hi - s[0]);
}

/* ------------------------------------------------------------------------- */
/* float64 row kernels                                                        */
/* ------------------------------------------------------------------------- */

static void fill_excluded_f64(const double *x, const uint8_t *where, double *y, int64_t n, double fill)
{
    const vd fill_v = vd_set1(fill);
    int64_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES)
        vd_store(y + i, vd_select(where_f64(where, i, VD_LANES), vd_load(x + i), fill_v));
    if (i < n)
        vd_store_partial(y + i, vd_select(where_f64(where, i, n - i), vd_load_partial(x + i, n - i, 0.0), fill_v),
                         n - i);
}

static void KERNEL(mask_f64)(const double *x, const uint8_t *where, double *y, int64_t n)
{
    fill_excluded_f64(x, where, y, n, -INFINITY);
}

static void KERNEL(partial_f64)(const double *x, const uint8_t *where, double *y, int64_t n, double row_max,
                                int precision, const csm_temperature *temperature, csm_partial *partial);

CSM_INLINE void partial_f64_sums(const double *x, const uint8_t *where, double *y, int64_t n, double row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int counted, const int masked, const int tempered);

CSM_INLINE void partial_f64_body(const double *x, const uint8_t *where, double *y, int64_t n, double row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int masked, const int tempered)
{
    if (tempered && exact && row_max > TEMPERED_HUGE_F64) {
        csm_kernels_scalar.partial_f64(x, where, y, n, row_max, CSM_EXACT, temperature, partial);
        return;
    }
    if (store && row_max == -INFINITY) {
        /* as partial_f32_body */
        KERNEL(partial_f64)(x, where, NULL, n, row_max, exact ? CSM_EXACT : CSM_FAST, temperature, partial);
        for (int64_t i = 0; i < n; i++)
            y[i] = 0;
        return;
    }
    if (exact || store || !isfinite(row_max))
        partial_f64_sums(x, where, y, n, row_max, temperature, partial, exact, store, !store, masked, tempered);
    else /* as partial_f32_body */
        partial_f64_sums(x, where, y, n, row_max, temperature, partial, exact, 0, 0, masked, tempered);
}

/* partial_f64_body's passes after the max, as partial_f32_sums. */
CSM_INLINE void partial_f64_sums(const double *x, const uint8_t *where, double *y, int64_t n, double row_max,
                                 const csm_temperature *temperature, csm_partial *partial, const int exact,
                                 const int store, const int counted, const int masked, const int tempered)
{
    const vd_inverse inverse = inverse_f64(temperature);
    const vd max_v = vd_set1(row_max);
    const vd negative_max = vd_set1(-row_max);
    vd sums[2] = {vd_zero(), vd_zero()};
    vd compensations[2] = {vd_zero(), vd_zero()};
    vd_count not_max = vd_count_zero();
    int64_t i = 0;
    /* main loop: two independent Kahan accumulators (exact) or plain sums (fast) */
    for (; i + 2 * VD_LANES <= n; i += 2 * VD_LANES) {
        if (n >= PREFETCH_NEXT_MIN)
            prefetch_next(x + i, n * (int64_t)sizeof(double), 2 * VD_LANES * (int64_t)sizeof(double));
        for (int k = 0; k < 2; k++) {
            vd xk = masked_f64(vd_load(x + i + k * VD_LANES), where, i + k * VD_LANES, VD_LANES, masked);
            vd e = exp_minus_max_f64(xk, negative_max, exact, !store, tempered, inverse);
            if (store) {
                vd_store(y + i + k * VD_LANES, e);
            } else if (counted) {
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
        vd xk = count == VD_LANES ? vd_load(x + i) : vd_load_partial(x + i, count, counted ? row_max : -INFINITY);
        xk = masked_f64(xk, where, i, count, masked);
        vd e = exp_minus_max_f64(xk, negative_max, exact, !store, tempered, inverse);
        if (store) {
            if (count == VD_LANES)
                vd_store(y + i, e);
            else
                vd_store_partial(y + i, e, count);
        } else if (counted) {
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
    if (!counted) {
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

static double KERNEL(max_f64)(const double *x, const uint8_t *where, int64_t n)
{
    return where ? max_f64(x, where, n, 1) : max_f64(x, NULL, n, 0);
}

static void KERNEL(partial_f64)(const double *x, const uint8_t *where, double *y, int64_t n, double row_max,
                                int precision, const csm_temperature *temperature, csm_partial *partial)
{
#define PARTIAL_F64(exact, store, masked, tempered)                                                                    \
    partial_f64_body(x, where, y, n, row_max, temperature, partial, exact, store, masked, tempered)
    SPECIALISE(PARTIAL_F64, precision == CSM_EXACT, y != NULL, where != NULL, temperature != NULL);
#undef PARTIAL_F64
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

/* As log_softmax_shifted_f32, with C = M + log_sum split by TwoSum (C_lo exact). */
CSM_INLINE vd log_softmax_shifted_f64(vd x, const csm_row_scale *scale)
{
    const double shift_hi = scale->max + scale->log_sum;
    const double bb = shift_hi - scale->max;
    const double shift_lo = (scale->max - (shift_hi - bb)) + (scale->log_sum - bb);
    return vd_sub(vd_sub(x, vd_set1(shift_hi)), vd_set1(shift_lo));
}

CSM_INLINE vd finish_f64_vector(vd x, int operation, const csm_row_scale *scale, const int exact, const int tempered,
                                vd_inverse inverse)
{
    const vd negative_max = vd_set1(-scale->max);
    if (operation == CSM_SOFTMAX)
        return scale_f64(exp_minus_max_f64(x, negative_max, exact, 0, tempered, inverse), vd_set1(scale->inverse_hi),
                         vd_set1(scale->inverse_lo), exact);
    if (exact && !tempered)
        return log_softmax_shifted_f64(x, scale);
    return log_softmax_f64(x, negative_max, vd_set1(scale->log_sum), exact, tempered, inverse);
}

CSM_INLINE void finish_f64_body(const double *x, const uint8_t *where, double *y, int64_t n, int operation,
                                const csm_temperature *temperature, const csm_row_scale *scale, const int exact,
                                const int masked, const int tempered)
{
    if (tempered && exact && scale->max > TEMPERED_HUGE_F64) {
        csm_kernels_scalar.finish_f64(x, where, y, n, operation, CSM_EXACT, temperature, scale);
        return;
    }
    /* A copy nothing can alias: intrinsic stores may alias anything, so loads
     * through `scale` would be repeated (with the shift's arithmetic) per vector. */
    const csm_row_scale row = *scale;
    const vd_inverse inverse = inverse_f64(temperature);
    int64_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES) {
        vd xk = masked_f64(vd_load(x + i), where, i, VD_LANES, masked);
        vd_store(y + i, finish_f64_vector(xk, operation, &row, exact, tempered, inverse));
    }
    if (i < n) {
        vd xk = masked_f64(vd_load_partial(x + i, n - i, 0.0), where, i, n - i, masked);
        vd_store_partial(y + i, finish_f64_vector(xk, operation, &row, exact, tempered, inverse), n - i);
    }
}

static void KERNEL(finish_f64)(const double *x, const uint8_t *where, double *y, int64_t n, int operation,
                               int precision, const csm_temperature *temperature, const csm_row_scale *scale)
{
#define FINISH_F64(exact, masked, tempered, unused)                                                                    \
    finish_f64_body(x, where, y, n, operation, temperature, scale, exact, masked, tempered)
    SPECIALISE(FINISH_F64, precision == CSM_EXACT, where != NULL, temperature != NULL, 0);
#undef FINISH_F64
}

/* ------------------------------------------------------------------------- */
/* Column tiles: COLUMN_VECTORS vectors of adjacent columns, rows `inner`     */
/* elements apart.  Max, exp-sum and output passes are vertical SIMD; the     */
/* per-column scale comes from the same row_scale.c combine as rows.         */
/* ------------------------------------------------------------------------- */

#define COLUMN_VECTORS 2 /* float32: 64-byte rows per tile (128 with AVX-512) */
#ifndef COLUMN_VECTORS_F64
#define COLUMN_VECTORS_F64 2 /* float64: 64-byte rows (1 vector halves line use; 4 spill with AVX2) */
#endif

/* Per-lane scalars of a log_softmax tile (either type), from per-lane partials. */
#define COLUMN_SCALE_LANES                                                                                             \
    (COLUMN_VECTORS * VF_LANES > COLUMN_VECTORS_F64 * VD_LANES ? COLUMN_VECTORS * VF_LANES                             \
                                                               : COLUMN_VECTORS_F64 * VD_LANES)
typedef struct {
    double max[COLUMN_SCALE_LANES];
    double log_sum[COLUMN_SCALE_LANES];
} column_scales;

/* log1p(r) for finite r >= 0, within about an ULP: u = 1 + r with its
 * rounding error c = (r - (u - 1)) / u; u = 2^k m with m in [sqrt(1/2),
 * sqrt(2)); log(m) = 2 atanh(s), s = (m - 1) / (m + 1), as f - h + s (h + R)
 * with f = m - 1, h = f^2 / 2 and R(s^2) the atanh series' tail to s^22
 * (|s| < 0.172: truncation below 2^-60); k ln2 split so k * LN2_HI is exact. */
CSM_INLINE vd log1p_f64(vd r)
{
    const vd one = vd_set1(1.0);
    vd u = vd_add(one, r);
    vd c = vd_div(vd_sub(r, vd_sub(u, one)), u);
    vd k = vd_exponent_of(u), m = vd_mantissa_of(u);
    vd_mask high = vd_not_less(m, vd_set1(0x1.6A09E667F3BCDp+0)); /* sqrt(2) */
    m = vd_select(high, vd_mul(m, vd_set1(0.5)), m);
    k = vd_select(high, vd_add(k, one), k);
    vd f = vd_sub(m, one); /* exact (Sterbenz) */
    vd s = vd_div(f, vd_add(m, one));
    vd z = vd_mul(s, s);
    /* R = sum_{j=1..11} 2 z^j / (2j + 1), Horner */
    vd p = vd_set1(2.0 / 23.0);
    static const double tail[10] = {2.0 / 21, 2.0 / 19, 2.0 / 17, 2.0 / 15, 2.0 / 13,
                                    2.0 / 11, 2.0 / 9,  2.0 / 7,  2.0 / 5,  2.0 / 3};
    for (int j = 0; j < 10; j++)
        p = vd_fma(p, z, vd_set1(tail[j]));
    vd big_r = vd_mul(p, z);
    vd h = vd_mul(vd_mul(f, f), vd_set1(0.5));
    /* log(m) = f - h + s (h + R); then + k ln2 + c */
    vd low = vd_fma(k, vd_set1(LN2_LO_F64), vd_add(c, vd_fma(s, vd_add(h, big_r), vd_sub(vd_zero(), h))));
    return vd_fma(k, vd_set1(LN2_HI_F64), vd_add(f, low));
}

/* Turns per-lane partials into log-sums: log1p in vectors for the finite
 * lanes (so a lane's bits never depend on its neighbours), the scalar
 * special-value rules of row_scale.c for the others (NaN, infinities,
 * nothing finite); writes logsumexp results directly.  Special rows get NaN,
 * which poisons the whole column. */
static void column_scales_from_partials(const csm_partial *partials, int64_t columns, int operation,
                                        const csm_temperature *temperature, column_scales *scales, double *logsumexp)
{
    enum {
        LANES = COLUMN_SCALE_LANES
    };
    double rest[LANES];
    int64_t j = 0;
    for (; j < columns; j++) {
        /* rest = (count - 1) + rest_hi + rest_lo, the sum row_scale.c forms */
        const csm_partial *p = &partials[j];
        const double ones = p->count - 1.0, total = ones + p->rest_hi;
        const double virtual_rest = total - ones;
        const double error = (ones - (total - virtual_rest)) + (p->rest_hi - virtual_rest);
        rest[j] = total + (error + p->rest_lo);
    }
    for (; j < LANES; j++)
        rest[j] = 0.0;
    for (j = 0; j < columns; j += VD_LANES)
        vd_store(scales->log_sum + j, log1p_f64(vd_load(rest + j)));
    for (j = 0; j < columns; j++) {
        scales->max[j] = partials[j].max;
        if (!isfinite(partials[j].max) || !isfinite(rest[j])) {
            csm_row_scale scale;
            csm_row_state state = csm_row_scale_from_partials(&partials[j], 1, operation, temperature, &scale);
            if (operation == CSM_LOGSUMEXP)
                logsumexp[j] = csm_logsumexp_from_state(state, &scale);
            scales->max[j] = scales->log_sum[j] = NAN;
        } else if (operation == CSM_LOGSUMEXP) {
            logsumexp[j] = scales->max[j] + scales->log_sum[j];
        }
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
 * per-vector state stays in registers); otherwise the tail tile of a slab.
 * masked: excluded elements read as -inf, and every output is finally
 * replaced by 0 / -inf where excluded (special columns are NaN elsewhere). */
CSM_INLINE void columns_f32_body(const float *x, const uint8_t *where, float *y, int64_t n, int64_t inner,
                                 int64_t columns, int operation, const csm_temperature *temperature, const int exact,
                                 const int full, const int masked, const int tempered)
{
    const int vectors = full ? COLUMN_VECTORS : (int)((columns + VF_LANES - 1) / VF_LANES);
    int64_t lanes[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++)
        lanes[v] = full ? VF_LANES : columns - v * VF_LANES < VF_LANES ? columns - v * VF_LANES : VF_LANES;
    const int store = operation == CSM_SOFTMAX;
    const vf_inverse inverse = inverse_f32(temperature);

    /* pass 1: column maxima */
    vf max_v[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++)
        max_v[v] = vf_set1(-INFINITY);
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VF_LANES;
            max_v[v] =
                vf_max(max_v[v], masked_f32(column_load_f32(x + at, lanes[v], -INFINITY), where, at, lanes[v], masked));
        }

    if (tempered && exact) { /* tail lanes hold -inf */
        float tile_max = -INFINITY;
        for (int v = 0; v < vectors; v++)
            tile_max = fmaxf(tile_max, vf_reduce_max(max_v[v]));
        if (tile_max > TEMPERED_HUGE_F32) {
            csm_kernels_scalar.columns_f32(x, where, y, n, inner, columns, operation, CSM_EXACT, temperature);
            return;
        }
    }

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
        /* the next tile (the x to this tile's right) for its max pass, whose strided rows the
         * hardware prefetchers do not follow */
        prefetch_next(x + i * inner, columns * (int64_t)sizeof(float), vectors * VF_LANES * (int64_t)sizeof(float));
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VF_LANES;
            vf xk = masked_f32(column_load_f32(x + at, lanes[v], -INFINITY), where, at, lanes[v], masked);
            vf e = exp_minus_max_f32(xk, negative_max[v], exact, !store, tempered, inverse);
            if (store) {
                column_store_f32(y + at, e, lanes[v]);
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
        vf inverse_hi[COLUMN_VECTORS], inverse_lo[COLUMN_VECTORS];
        for (int v = 0; v < vectors; v++) {
            vd inverse_low = vd_div(vd_set1(1.0), sums[2 * v]);
            vd inverse_high = vd_div(vd_set1(1.0), sums[2 * v + 1]);
            inverse_hi[v] = vf_from_vd_pair(inverse_low, inverse_high);
            inverse_lo[v] = vf_from_vd_pair(vd_sub(inverse_low, vd_from_vf_low(inverse_hi[v])),
                                            vd_sub(inverse_high, vd_from_vf_high(inverse_hi[v])));
        }
        /* whole tile rows, last first: pass 2's last rows are still in L1 */
        for (int64_t i = n - 1; i >= 0; i--)
            for (int v = 0; v < vectors; v++) {
                const int64_t at = i * inner + v * VF_LANES;
                vf out = scale_f32(column_load_f32(y + at, lanes[v], 0.0f), inverse_hi[v], inverse_lo[v], exact);
                if (masked)
                    out = vf_select(where_f32(where, at, lanes[v]), out, vf_set1(0.0f));
                column_store_f32(y + at, out, lanes[v]);
            }
        return;
    }

    /* log_softmax / logsumexp: per-lane log1p of the non-maximal sum */
    csm_partial partials[COLUMN_VECTORS * VF_LANES] = {{0.0, 0.0, 0.0, 0.0}};
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
    column_scales_from_partials(partials, columns, operation, temperature, &scales, logsumexp);
    if (operation == CSM_LOGSUMEXP) {
        for (int64_t j = 0; j < columns; j++)
            y[j] = (float)logsumexp[j];
        return;
    }

    /* pass 3: log_softmax outputs, whole tile rows, last first (as softmax) */
    const vd inverse_d = vd_set1(temperature ? temperature->inverse_hi : 1.0);
    vd max_low[COLUMN_VECTORS], max_high[COLUMN_VECTORS], log_low[COLUMN_VECTORS], log_high[COLUMN_VECTORS];
    vf max_f[COLUMN_VECTORS], log_f[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++) {
        const int64_t base = v * VF_LANES;
        max_low[v] = vd_load(scales.max + base);
        max_high[v] = vd_load(scales.max + base + VD_LANES);
        log_low[v] = vd_load(scales.log_sum + base);
        log_high[v] = vd_load(scales.log_sum + base + VD_LANES);
        max_f[v] = vf_from_vd_pair(max_low[v], max_high[v]);
        log_f[v] = vf_from_vd_pair(log_low[v], log_high[v]);
    }
    for (int64_t i = n - 1; i >= 0; i--)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VF_LANES;
            vf xk = column_load_f32(x + at, lanes[v], 0.0f);
            vf out;
            if (exact) {
                vd low = vd_sub(vd_from_vf_low(xk), max_low[v]), high = vd_sub(vd_from_vf_high(xk), max_high[v]);
                if (tempered) {
                    low = vd_mul(low, inverse_d);
                    high = vd_mul(high, inverse_d);
                }
                out = vf_from_vd_pair(vd_sub(low, log_low[v]), vd_sub(high, log_high[v]));
            } else {
                vf d = vf_sub(xk, max_f[v]);
                out = vf_sub(tempered ? vf_mul(d, inverse.hi) : d, log_f[v]);
            }
            if (masked)
                out = vf_select(where_f32(where, at, lanes[v]), out, vf_set1(-INFINITY));
            column_store_f32(y + at, out, lanes[v]);
        }
}

static void KERNEL(columns_f32)(const float *x, const uint8_t *where, float *y, int64_t n, int64_t inner,
                                int64_t columns, int operation, int precision, const csm_temperature *temperature)
{
#define COLUMNS_F32(exact, full, masked, tempered)                                                                     \
    columns_f32_body(x, where, y, n, inner, columns, operation, temperature, exact, full, masked, tempered)
    SPECIALISE(COLUMNS_F32, precision == CSM_EXACT, columns == COLUMN_VECTORS * VF_LANES, where != NULL,
               temperature != NULL);
#undef COLUMNS_F32
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

/* As columns_f32_body, with Kahan sums. */
CSM_INLINE void columns_f64_body(const double *x, const uint8_t *where, double *y, int64_t n, int64_t inner,
                                 int64_t columns, int operation, const csm_temperature *temperature, const int exact,
                                 const int full, const int masked, const int tempered)
{
    const int vectors = full ? COLUMN_VECTORS_F64 : (int)((columns + VD_LANES - 1) / VD_LANES);
    int64_t lanes[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++)
        lanes[v] = full ? VD_LANES : columns - v * VD_LANES < VD_LANES ? columns - v * VD_LANES : VD_LANES;
    const int store = operation == CSM_SOFTMAX;
    const vd_inverse inverse = inverse_f64(temperature);

    /* pass 1: column maxima */
    vd max_v[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++)
        max_v[v] = vd_set1(-INFINITY);
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VD_LANES;
            max_v[v] =
                vd_max(max_v[v], masked_f64(column_load_f64(x + at, lanes[v], -INFINITY), where, at, lanes[v], masked));
        }

    if (tempered && exact) { /* tail lanes hold -inf */
        double tile_max = -INFINITY;
        for (int v = 0; v < vectors; v++)
            tile_max = fmax(tile_max, vd_reduce_max(max_v[v]));
        if (tile_max > TEMPERED_HUGE_F64) {
            csm_kernels_scalar.columns_f64(x, where, y, n, inner, columns, operation, CSM_EXACT, temperature);
            return;
        }
    }

    /* pass 2: exp (stored for softmax) and Kahan sums */
    vd negative_max[COLUMN_VECTORS_F64], sums[COLUMN_VECTORS_F64], compensations[COLUMN_VECTORS_F64];
    vd_count not_max[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++) {
        negative_max[v] = vd_sub(vd_zero(), max_v[v]);
        sums[v] = compensations[v] = vd_zero();
        not_max[v] = vd_count_zero();
    }
    for (int64_t i = 0; i < n; i++) {
        /* the next tile, as in columns_f32_body */
        prefetch_next(x + i * inner, columns * (int64_t)sizeof(double), vectors * VD_LANES * (int64_t)sizeof(double));
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VD_LANES;
            vd xk = masked_f64(column_load_f64(x + at, lanes[v], -INFINITY), where, at, lanes[v], masked);
            vd e = exp_minus_max_f64(xk, negative_max[v], exact, !store, tempered, inverse);
            if (store) {
                column_store_f64(y + at, e, lanes[v]);
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
        vd inverse_hi[COLUMN_VECTORS_F64], inverse_lo[COLUMN_VECTORS_F64];
        for (int v = 0; v < vectors; v++) {
            vd sum_hi = vd_sub(sums[v], compensations[v]);
            vd sum_lo = vd_sub(vd_zero(), vd_add(compensations[v], vd_sub(sum_hi, sums[v])));
            inverse_hi[v] = vd_div(vd_set1(1.0), sum_hi);
            vd residual =
                vd_sub(vd_fma(vd_sub(vd_zero(), inverse_hi[v]), sum_hi, vd_set1(1.0)), vd_mul(inverse_hi[v], sum_lo));
            inverse_lo[v] = vd_mul(residual, inverse_hi[v]);
        }
        /* whole tile rows, last first: pass 2's last rows are still in L1 */
        for (int64_t i = n - 1; i >= 0; i--)
            for (int v = 0; v < vectors; v++) {
                const int64_t at = i * inner + v * VD_LANES;
                vd out = scale_f64(column_load_f64(y + at, lanes[v], 0.0), inverse_hi[v], inverse_lo[v], exact);
                if (masked)
                    out = vd_select(where_f64(where, at, lanes[v]), out, vd_zero());
                column_store_f64(y + at, out, lanes[v]);
            }
        return;
    }

    /* log_softmax / logsumexp: per-lane log1p of the non-maximal sum */
    csm_partial partials[COLUMN_VECTORS_F64 * VD_LANES] = {{0.0, 0.0, 0.0, 0.0}};
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
    column_scales_from_partials(partials, columns, operation, temperature, &scales, logsumexp);
    if (operation == CSM_LOGSUMEXP) {
        for (int64_t j = 0; j < columns; j++)
            y[j] = logsumexp[j];
        return;
    }

    /* pass 3: log_softmax outputs, whole tile rows, last first (as softmax) */
    vd log_sums[COLUMN_VECTORS_F64];
    for (int v = 0; v < vectors; v++) {
        negative_max[v] = vd_sub(vd_zero(), vd_load(scales.max + v * VD_LANES));
        log_sums[v] = vd_load(scales.log_sum + v * VD_LANES);
    }
    for (int64_t i = n - 1; i >= 0; i--)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VD_LANES;
            vd out = log_softmax_f64(column_load_f64(x + at, lanes[v], 0.0), negative_max[v], log_sums[v], exact,
                                     tempered, inverse);
            if (masked)
                out = vd_select(where_f64(where, at, lanes[v]), out, vd_set1(-INFINITY));
            column_store_f64(y + at, out, lanes[v]);
        }
}

static void KERNEL(columns_f64)(const double *x, const uint8_t *where, double *y, int64_t n, int64_t inner,
                                int64_t columns, int operation, int precision, const csm_temperature *temperature)
{
#define COLUMNS_F64(exact, full, masked, tempered)                                                                     \
    columns_f64_body(x, where, y, n, inner, columns, operation, temperature, exact, full, masked, tempered)
    SPECIALISE(COLUMNS_F64, precision == CSM_EXACT, columns == COLUMN_VECTORS_F64 * VD_LANES, where != NULL,
               temperature != NULL);
#undef COLUMNS_F64
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
 * i < columns, j < rows: 8x8 register blocks (masked at the edges) where the
 * vocabulary has them, else element by element. */
static void transpose_f32(const float *source, int64_t source_stride, float *destination, int64_t destination_stride,
                          int64_t rows, int64_t columns)
{
#ifdef VF_HAS_TRANSPOSE_8X8
    for (int64_t j = 0; j < rows; j += 8)
        for (int64_t i = 0; i < columns; i += 8)
            vf_transpose_8x8(source + j * source_stride + i, source_stride, destination + i * destination_stride + j,
                             destination_stride, rows - j < 8 ? rows - j : 8, columns - i < 8 ? columns - i : 8);
#else
    for (int64_t j = 0; j < rows; j++)
        for (int64_t i = 0; i < columns; i++)
            destination[i * destination_stride + j] = source[j * source_stride + i];
#endif
}

/* As transpose_f32, with 4x4 blocks. */
static void transpose_f64(const double *source, int64_t source_stride, double *destination, int64_t destination_stride,
                          int64_t rows, int64_t columns)
{
#ifdef VD_HAS_TRANSPOSE_4X4
    for (int64_t j = 0; j < rows; j += 4)
        for (int64_t i = 0; i < columns; i += 4)
            vd_transpose_4x4(source + j * source_stride + i, source_stride, destination + i * destination_stride + j,
                             destination_stride, rows - j < 4 ? rows - j : 4, columns - i < 4 ? columns - i : 4);
#else
    for (int64_t j = 0; j < rows; j++)
        for (int64_t i = 0; i < columns; i++)
            destination[i * destination_stride + j] = source[j * source_stride + i];
#endif
}

/* Masked short rows: the tile's rows (contiguous) are first copied with
 * excluded elements set to -inf, and the outputs' excluded elements are set
 * afterwards (special rows are NaN everywhere in the column kernel): two
 * contiguous vector passes instead of a transposed mask. */
static void KERNEL(rows_f32)(const float *x, const uint8_t *where, float *y, int64_t rows, int64_t n, int operation,
                             int precision, const csm_temperature *temperature)
{
    enum {
        TILE = COLUMN_VECTORS * VF_LANES
    };
    float buffer[SHORT_ROW_LIMIT * TILE], masked_rows[SHORT_ROW_LIMIT * TILE];
    const float excluded = operation == CSM_SOFTMAX ? 0.0f : -INFINITY;
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        const float *source = x + first * n;
        if (where) {
            fill_excluded_f32(source, where + first * n, masked_rows, count * n, -INFINITY);
            source = masked_rows;
        }
        transpose_f32(source, n, buffer, TILE, count, n);
        float *destination = operation == CSM_LOGSUMEXP ? y + first : buffer;
        KERNEL(columns_f32)(buffer, NULL, destination, n, TILE, count, operation, precision, temperature);
        if (operation == CSM_LOGSUMEXP)
            continue;
        transpose_f32(buffer, TILE, y + first * n, n, n, count);
        if (where)
            fill_excluded_f32(y + first * n, where + first * n, y + first * n, count * n, excluded);
    }
}

static void KERNEL(rows_f64)(const double *x, const uint8_t *where, double *y, int64_t rows, int64_t n, int operation,
                             int precision, const csm_temperature *temperature)
{
    enum {
        TILE = COLUMN_VECTORS_F64 * VD_LANES
    };
    double buffer[SHORT_ROW_LIMIT * TILE], masked_rows[SHORT_ROW_LIMIT * TILE];
    const double excluded = operation == CSM_SOFTMAX ? 0.0 : -INFINITY;
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        const double *source = x + first * n;
        if (where) {
            fill_excluded_f64(source, where + first * n, masked_rows, count * n, -INFINITY);
            source = masked_rows;
        }
        transpose_f64(source, n, buffer, TILE, count, n);
        double *destination = operation == CSM_LOGSUMEXP ? y + first : buffer;
        KERNEL(columns_f64)(buffer, NULL, destination, n, TILE, count, operation, precision, temperature);
        if (operation == CSM_LOGSUMEXP)
            continue;
        transpose_f64(buffer, TILE, y + first * n, n, n, count);
        if (where)
            fill_excluded_f64(y + first * n, where + first * n, y + first * n, count * n, excluded);
    }
}

/* ------------------------------------------------------------------------- */
/* Gradients: the vector-Jacobian products of softmax and log_softmax given  */
/* their output s.  softmax: out = s * (g - sum(g * s)); log_softmax:        */
/* out = g - exp(s) * sum(g).  Sums run over the included elements in double */
/* (several accumulators: a recursive sum's n * u error is the tolerance);   */
/* outputs are formed in the element type                                     */
/* (two roundings, as in every autograd); excluded outputs are 0.  Short     */
/* rows are transposed in tiles like the softmax rows.                        */
/* ------------------------------------------------------------------------- */

CSM_INLINE vf_mask all_lanes_f32(void) { return vf_not_less(vf_set1(0.0f), vf_set1(0.0f)); }
CSM_INLINE vd_mask all_lanes_f64(void) { return vd_not_less(vd_zero(), vd_zero()); }

/* The summed term of one vector (g * s, or g); excluded lanes give 0. */
CSM_INLINE vf backward_term_f32(vf g, vf s, vf_mask keep, const int softmax, const int masked)
{
    vf term = softmax ? vf_mul(g, s) : g;
    return masked ? vf_keep(keep, term) : term;
}

CSM_INLINE vf backward_output_f32(vf g, vf s, vf sum, vf_mask keep, const int softmax, const int masked)
{
    vf out = softmax ? vf_mul(s, vf_sub(g, sum)) : vf_sub(g, vf_mul(exp_f32(s, vf_set1(0.0f), 1, 0), sum));
    return masked ? vf_keep(keep, out) : out;
}

CSM_INLINE vd backward_term_f64(vd g, vd s, vd_mask keep, const int softmax, const int masked)
{
    vd term = softmax ? vd_mul(g, s) : g;
    return masked ? vd_keep(keep, term) : term;
}

CSM_INLINE vd backward_output_f64(vd g, vd s, vd sum, vd_mask keep, const int softmax, const int masked)
{
    vd out = softmax ? vd_mul(s, vd_sub(g, sum)) : vd_sub(g, vd_mul(exp_f64(s, vd_zero(), 1, 0), sum));
    return masked ? vd_keep(keep, out) : out;
}

CSM_INLINE void backward_row_f32(const float *g, const float *s, const uint8_t *where, float *out, int64_t n,
                                 const int softmax, const int masked)
{
    vd sums[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    int64_t i = 0;
    /* main loop */
    for (; i + 2 * VF_LANES <= n; i += 2 * VF_LANES)
        for (int k = 0; k < 2; k++) {
            const int64_t at = i + k * VF_LANES;
            vf_mask keep = masked ? where_f32(where, at, VF_LANES) : all_lanes_f32();
            vf term = backward_term_f32(vf_load(g + at), vf_load(s + at), keep, softmax, masked);
            sums[2 * k] = vd_add(sums[2 * k], vd_from_vf_low(term));
            sums[2 * k + 1] = vd_add(sums[2 * k + 1], vd_from_vf_high(term));
        }
    /* tail */
    for (; i < n; i += VF_LANES) {
        const int64_t count = n - i < VF_LANES ? n - i : VF_LANES;
        vf_mask keep = masked ? where_f32(where, i, count) : all_lanes_f32();
        vf term = backward_term_f32(column_load_f32(g + i, count, 0.0f), column_load_f32(s + i, count, 0.0f), keep,
                                    softmax, masked);
        sums[0] = vd_add(sums[0], vd_from_vf_low(term));
        sums[1] = vd_add(sums[1], vd_from_vf_high(term));
    }
    const vf total = vf_set1((float)sum_lanes_f64(sums, 4));
    for (i = 0; i < n; i += VF_LANES) {
        const int64_t count = n - i < VF_LANES ? n - i : VF_LANES;
        vf_mask keep = masked ? where_f32(where, i, count) : all_lanes_f32();
        column_store_f32(out + i,
                         backward_output_f32(column_load_f32(g + i, count, 0.0f), column_load_f32(s + i, count, 0.0f),
                                             total, keep, softmax, masked),
                         count);
    }
}

/* A tile of adjacent columns of an (n, inner) slab (see columns_f32). */
CSM_INLINE void backward_columns_f32(const float *g, const float *s, const uint8_t *where, float *out, int64_t n,
                                     int64_t inner, int64_t columns, const int softmax, const int masked)
{
    const int vectors = (int)((columns + VF_LANES - 1) / VF_LANES);
    int64_t lanes[COLUMN_VECTORS];
    vd sums[2][2 * COLUMN_VECTORS]; /* even and odd rows: two dependency chains */
    for (int v = 0; v < vectors; v++) {
        lanes[v] = columns - v * VF_LANES < VF_LANES ? columns - v * VF_LANES : VF_LANES;
        sums[0][2 * v] = sums[0][2 * v + 1] = sums[1][2 * v] = sums[1][2 * v + 1] = vd_zero();
    }
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_ROWS < n) {
            CSM_PREFETCH(g + (i + PREFETCH_ROWS) * inner);
            CSM_PREFETCH(g + (i + PREFETCH_ROWS) * inner + columns - 1);
            CSM_PREFETCH(s + (i + PREFETCH_ROWS) * inner);
            CSM_PREFETCH(s + (i + PREFETCH_ROWS) * inner + columns - 1);
        }
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VF_LANES;
            vf_mask keep = masked ? where_f32(where, at, lanes[v]) : all_lanes_f32();
            vf term = backward_term_f32(column_load_f32(g + at, lanes[v], 0.0f),
                                        column_load_f32(s + at, lanes[v], 0.0f), keep, softmax, masked);
            vd *row_sums = sums[i & 1];
            row_sums[2 * v] = vd_add(row_sums[2 * v], vd_from_vf_low(term));
            row_sums[2 * v + 1] = vd_add(row_sums[2 * v + 1], vd_from_vf_high(term));
        }
    }
    vf totals[COLUMN_VECTORS];
    for (int v = 0; v < vectors; v++)
        totals[v] =
            vf_from_vd_pair(vd_add(sums[0][2 * v], sums[1][2 * v]), vd_add(sums[0][2 * v + 1], sums[1][2 * v + 1]));
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VF_LANES;
            vf_mask keep = masked ? where_f32(where, at, lanes[v]) : all_lanes_f32();
            column_store_f32(out + at,
                             backward_output_f32(column_load_f32(g + at, lanes[v], 0.0f),
                                                 column_load_f32(s + at, lanes[v], 0.0f), totals[v], keep, softmax,
                                                 masked),
                             lanes[v]);
        }
}

CSM_INLINE void backward_row_f64(const double *g, const double *s, const uint8_t *where, double *out, int64_t n,
                                 const int softmax, const int masked)
{
    vd sums[UNROLL] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
    int64_t i = 0;
    /* main loop */
    for (; i + UNROLL * VD_LANES <= n; i += UNROLL * VD_LANES)
        for (int k = 0; k < UNROLL; k++) {
            const int64_t at = i + k * VD_LANES;
            vd_mask keep = masked ? where_f64(where, at, VD_LANES) : all_lanes_f64();
            sums[k] = vd_add(sums[k], backward_term_f64(vd_load(g + at), vd_load(s + at), keep, softmax, masked));
        }
    /* tail */
    for (; i < n; i += VD_LANES) {
        const int64_t count = n - i < VD_LANES ? n - i : VD_LANES;
        vd_mask keep = masked ? where_f64(where, i, count) : all_lanes_f64();
        sums[0] = vd_add(sums[0], backward_term_f64(column_load_f64(g + i, count, 0.0),
                                                    column_load_f64(s + i, count, 0.0), keep, softmax, masked));
    }
    const vd total = vd_set1(sum_lanes_f64(sums, UNROLL));
    for (i = 0; i < n; i += VD_LANES) {
        const int64_t count = n - i < VD_LANES ? n - i : VD_LANES;
        vd_mask keep = masked ? where_f64(where, i, count) : all_lanes_f64();
        column_store_f64(out + i,
                         backward_output_f64(column_load_f64(g + i, count, 0.0), column_load_f64(s + i, count, 0.0),
                                             total, keep, softmax, masked),
                         count);
    }
}

CSM_INLINE void backward_columns_f64(const double *g, const double *s, const uint8_t *where, double *out, int64_t n,
                                     int64_t inner, int64_t columns, const int softmax, const int masked)
{
    const int vectors = (int)((columns + VD_LANES - 1) / VD_LANES);
    int64_t lanes[COLUMN_VECTORS_F64];
    vd sums[2][COLUMN_VECTORS_F64]; /* even and odd rows: two dependency chains */
    for (int v = 0; v < vectors; v++) {
        lanes[v] = columns - v * VD_LANES < VD_LANES ? columns - v * VD_LANES : VD_LANES;
        sums[0][v] = sums[1][v] = vd_zero();
    }
    for (int64_t i = 0; i < n; i++) {
        if (i + PREFETCH_ROWS < n) {
            CSM_PREFETCH(g + (i + PREFETCH_ROWS) * inner);
            CSM_PREFETCH(g + (i + PREFETCH_ROWS) * inner + columns - 1);
            CSM_PREFETCH(s + (i + PREFETCH_ROWS) * inner);
            CSM_PREFETCH(s + (i + PREFETCH_ROWS) * inner + columns - 1);
        }
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VD_LANES;
            vd_mask keep = masked ? where_f64(where, at, lanes[v]) : all_lanes_f64();
            sums[i & 1][v] = vd_add(sums[i & 1][v],
                                    backward_term_f64(column_load_f64(g + at, lanes[v], 0.0),
                                                      column_load_f64(s + at, lanes[v], 0.0), keep, softmax, masked));
        }
    }
    for (int v = 0; v < vectors; v++)
        sums[0][v] = vd_add(sums[0][v], sums[1][v]);
    for (int64_t i = 0; i < n; i++)
        for (int v = 0; v < vectors; v++) {
            const int64_t at = i * inner + v * VD_LANES;
            vd_mask keep = masked ? where_f64(where, at, lanes[v]) : all_lanes_f64();
            column_store_f64(out + at,
                             backward_output_f64(column_load_f64(g + at, lanes[v], 0.0),
                                                 column_load_f64(s + at, lanes[v], 0.0), sums[0][v], keep, softmax,
                                                 masked),
                             lanes[v]);
        }
}

/* `rows` rows of n <= SHORT_ROW_LIMIT: tiles transposed into columns; a
 * mask as in rows_f32 (excluded gradients read as 0, outputs set to 0). */
CSM_INLINE void backward_short_rows_f32(const float *g, const float *s, const uint8_t *where, float *out, int64_t rows,
                                        int64_t n, const int softmax, const int masked)
{
    enum {
        TILE = COLUMN_VECTORS * VF_LANES
    };
    float g_buffer[SHORT_ROW_LIMIT * TILE], s_buffer[SHORT_ROW_LIMIT * TILE], masked_rows[SHORT_ROW_LIMIT * TILE];
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        const float *source = g + first * n;
        if (masked) {
            fill_excluded_f32(source, where + first * n, masked_rows, count * n, 0.0f);
            source = masked_rows;
        }
        transpose_f32(source, n, g_buffer, TILE, count, n);
        transpose_f32(s + first * n, n, s_buffer, TILE, count, n);
        backward_columns_f32(g_buffer, s_buffer, NULL, g_buffer, n, TILE, count, softmax, 0);
        transpose_f32(g_buffer, TILE, out + first * n, n, n, count);
        if (masked)
            fill_excluded_f32(out + first * n, where + first * n, out + first * n, count * n, 0.0f);
    }
}

CSM_INLINE void backward_short_rows_f64(const double *g, const double *s, const uint8_t *where, double *out,
                                        int64_t rows, int64_t n, const int softmax, const int masked)
{
    enum {
        TILE = COLUMN_VECTORS_F64 * VD_LANES
    };
    double g_buffer[SHORT_ROW_LIMIT * TILE], s_buffer[SHORT_ROW_LIMIT * TILE], masked_rows[SHORT_ROW_LIMIT * TILE];
    for (int64_t first = 0; first < rows; first += TILE) {
        const int64_t count = rows - first < TILE ? rows - first : TILE;
        const double *source = g + first * n;
        if (masked) {
            fill_excluded_f64(source, where + first * n, masked_rows, count * n, 0.0);
            source = masked_rows;
        }
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < n; i++) {
                g_buffer[i * TILE + j] = source[j * n + i];
                s_buffer[i * TILE + j] = s[(first + j) * n + i];
            }
        backward_columns_f64(g_buffer, s_buffer, NULL, g_buffer, n, TILE, count, softmax, 0);
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < n; i++)
                out[(first + j) * n + i] = g_buffer[i * TILE + j];
        if (masked)
            fill_excluded_f64(out + first * n, where + first * n, out + first * n, count * n, 0.0);
    }
}

/* inner == 1: `columns` consecutive rows of n; else a tile of columns. */
#define BACKWARD_BODY(SUFFIX, ELEMENT)                                                                                 \
    CSM_INLINE void backward_##SUFFIX##_body(const ELEMENT *g, const ELEMENT *s, const uint8_t *where, ELEMENT *out,   \
                                             int64_t n, int64_t inner, int64_t columns, const int softmax,             \
                                             const int masked)                                                         \
    {                                                                                                                  \
        if (inner > 1) {                                                                                               \
            backward_columns_##SUFFIX(g, s, where, out, n, inner, columns, softmax, masked);                           \
        } else if (n <= SHORT_ROW_LIMIT) {                                                                             \
            backward_short_rows_##SUFFIX(g, s, where, out, columns, n, softmax, masked);                               \
        } else {                                                                                                       \
            for (int64_t row = 0; row < columns; row++)                                                                \
                backward_row_##SUFFIX(g + row * n, s + row * n, masked ? where + row * n : NULL, out + row * n, n,     \
                                      softmax, masked);                                                                \
        }                                                                                                              \
    }                                                                                                                  \
                                                                                                                       \
    static void KERNEL(backward_##SUFFIX)(const ELEMENT *g, const ELEMENT *s, const uint8_t *where, ELEMENT *out,      \
                                          int64_t n, int64_t inner, int64_t columns, int operation)                    \
    {                                                                                                                  \
        SPECIALISE(BACKWARD_##SUFFIX, operation == CSM_SOFTMAX, where != NULL, 0, 0);                                  \
    }

#define BACKWARD_f32(softmax, masked, unused_a, unused_b)                                                              \
    backward_f32_body(g, s, where, out, n, inner, columns, softmax, masked)
#define BACKWARD_f64(softmax, masked, unused_a, unused_b)                                                              \
    backward_f64_body(g, s, where, out, n, inner, columns, softmax, masked)
BACKWARD_BODY(f32, float)
BACKWARD_BODY(f64, double)
#undef BACKWARD_BODY
#undef BACKWARD_f32
#undef BACKWARD_f64

static const csm_kernel_table KERNEL(table) = {
    .name = CSM_STRINGIFY(CSM_ISA_SUFFIX),
    .max_f32 = KERNEL(max_f32),
    .partial_f32 = KERNEL(partial_f32),
    .max_f64 = KERNEL(max_f64),
    .partial_f64 = KERNEL(partial_f64),
    .mask_f32 = KERNEL(mask_f32),
    .mask_f64 = KERNEL(mask_f64),
    .scale_f32 = KERNEL(scale_f32),
    .scale_f64 = KERNEL(scale_f64),
    .finish_f32 = KERNEL(finish_f32),
    .finish_f64 = KERNEL(finish_f64),
    .columns_f32 = KERNEL(columns_f32),
    .columns_f64 = KERNEL(columns_f64),
    .rows_f32 = KERNEL(rows_f32),
    .rows_f64 = KERNEL(rows_f64),
    .backward_f32 = KERNEL(backward_f32),
    .backward_f64 = KERNEL(backward_f64),
    .column_tile_f32 = COLUMN_VECTORS * VF_LANES,
    .column_tile_f64 = COLUMN_VECTORS_F64 * VD_LANES,
    .short_row_limit = SHORT_ROW_LIMIT,
};
