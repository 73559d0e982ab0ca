/* 128-bit vector vocabulary for simd_template.h (AArch64 Advanced SIMD, the
 * baseline of every aarch64 CPU).  vf: 4 floats, vd: 2 doubles, masks are
 * all-ones / all-zeros lanes from the compare instructions, counts are the
 * matching signed integer lanes.
 *
 * NaN semantics differ from x86 and still give the template what it needs.
 * FMAX/FMIN (vmaxq/vminq) return NaN when *either* operand is NaN, where
 * MAXPS/MINPS return the second operand.  The template only relies on a NaN
 * in the second operand propagating (x goes second in difference_* and in
 * the max passes), which both do.  NEON also keeps a NaN that is already in
 * the running maximum, so a row holding a NaN reports max = NaN instead of
 * the maximum of its other elements: row_scale.c classifies a NaN max (as
 * well as a NaN sum) as a NaN row, and in the column kernels a NaN maximum
 * makes every exp(x - max) NaN, so the outcome is the contract's NaN row
 * either way.  FMAXNM/FMINNM ("a number beats NaN") would drop a NaN x from
 * difference_* and are deliberately not used.
 *
 * NEON has no masked loads or stores: the partial forms below touch exactly
 * `count` elements with lane loads and stores, so a tail never reads or
 * writes past the end of its array. */
#ifndef CSM_VECTOR_NEON_H
#define CSM_VECTOR_NEON_H

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#include "kernel_table.h"

#define CSM_ISA_SUFFIX neon
#define VF_LANES 4
#define VD_LANES 2

typedef float32x4_t vf;
typedef float64x2_t vd;
typedef uint32x4_t vf_mask;
typedef uint64x2_t vd_mask;
typedef int32x4_t vf_count;
typedef int64x2_t vd_count;

/* ---- float32 ---- */
CSM_INLINE vf vf_set1(float a) { return vdupq_n_f32(a); }
CSM_INLINE vf vf_load(const float *p) { return vld1q_f32(p); }
CSM_INLINE void vf_store(float *p, vf v) { vst1q_f32(p, v); }
/* The first `count` (0 <= count < VF_LANES) lanes from p, the others `fill`. */
CSM_INLINE vf vf_load_partial(const float *p, int64_t count, float fill)
{
    vf v = vdupq_n_f32(fill);
    if (count >= 2) {
        v = vcombine_f32(vld1_f32(p), vget_high_f32(v));
        if (count == 3)
            v = vld1q_lane_f32(p + 2, v, 2);
    } else if (count == 1) {
        v = vld1q_lane_f32(p, v, 0);
    }
    return v;
}
/* Stores the first `count` (0 <= count < VF_LANES) lanes of v. */
CSM_INLINE void vf_store_partial(float *p, vf v, int64_t count)
{
    if (count >= 2) {
        vst1_f32(p, vget_low_f32(v));
        if (count == 3)
            vst1q_lane_f32(p + 2, v, 2);
    } else if (count == 1) {
        vst1q_lane_f32(p, v, 0);
    }
}
CSM_INLINE vf vf_add(vf a, vf b) { return vaddq_f32(a, b); }
CSM_INLINE vf vf_sub(vf a, vf b) { return vsubq_f32(a, b); }
CSM_INLINE vf vf_mul(vf a, vf b) { return vmulq_f32(a, b); }
CSM_INLINE vf vf_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }            /* a * b + c, one rounding */
CSM_INLINE vf vf_fms(vf a, vf b, vf c) { return vfmaq_f32(vnegq_f32(c), a, b); } /* a * b - c, one rounding */
/* NaN in either operand gives NaN (see the top of this file). */
CSM_INLINE vf vf_max(vf a, vf b) { return vmaxq_f32(a, b); }
CSM_INLINE vf vf_min(vf a, vf b) { return vminq_f32(a, b); }
/* !(a < b) rather than a >= b, so that NaN lanes are true (unordered). */
CSM_INLINE vf_mask vf_not_less(vf a, vf b) { return vmvnq_u32(vcltq_f32(a, b)); }
CSM_INLINE vf_mask vf_not_equal(vf a, vf b) { return vmvnq_u32(vceqq_f32(a, b)); } /* true for NaN */
/* 0 where !keep */
CSM_INLINE vf vf_keep(vf_mask keep, vf v) { return vreinterpretq_f32_u32(vandq_u32(keep, vreinterpretq_u32_f32(v))); }
CSM_INLINE vf vf_select(vf_mask m, vf a, vf b) { return vbslq_f32(m, a, b); } /* m ? a : b */
/* Lane j true where the byte p[j] is nonzero (a NumPy bool mask). */
CSM_INLINE vf_mask vf_mask_from_bytes(const uint8_t *p)
{
    uint32_t word;
    memcpy(&word, p, sizeof word);
    uint32x4_t wide = vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(word)))));
    return vtstq_u32(wide, wide);
}
/* 2^n from the magic-biased value whose low mantissa bits hold n + 127. */
CSM_INLINE vf vf_exponent_from_biased(vf biased)
{
    return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(biased), 23));
}
CSM_INLINE float vf_reduce_max(vf v) { return vmaxvq_f32(v); }
CSM_INLINE vd vd_from_vf_low(vf v) { return vcvt_f64_f32(vget_low_f32(v)); }
CSM_INLINE vd vd_from_vf_high(vf v) { return vcvt_high_f64_f32(v); }
CSM_INLINE vf vf_from_vd_pair(vd low, vd high) { return vcvt_high_f32_f64(vcvt_f32_f64(low), high); }
/* A true mask lane is -1: subtracting it counts one. */
CSM_INLINE vf_count vf_count_zero(void) { return vdupq_n_s32(0); }
CSM_INLINE vf_count vf_count_add(vf_count c, vf_mask m) { return vsubq_s32(c, vreinterpretq_s32_u32(m)); }
CSM_INLINE void vf_count_store(int32_t *p, vf_count c) { vst1q_s32(p, c); }

/* ---- float64 ---- */
CSM_INLINE vd vd_set1(double a) { return vdupq_n_f64(a); }
CSM_INLINE vd vd_zero(void) { return vdupq_n_f64(0.0); }
CSM_INLINE vd vd_load(const double *p) { return vld1q_f64(p); }
CSM_INLINE void vd_store(double *p, vd v) { vst1q_f64(p, v); }
/* With two lanes a partial access is lane 0 alone (count is 0 or 1). */
CSM_INLINE vd vd_load_partial(const double *p, int64_t count, double fill)
{
    vd v = vdupq_n_f64(fill);
    return count >= 1 ? vld1q_lane_f64(p, v, 0) : v;
}
CSM_INLINE void vd_store_partial(double *p, vd v, int64_t count)
{
    if (count >= 1)
        vst1q_lane_f64(p, v, 0);
}
CSM_INLINE vd vd_add(vd a, vd b) { return vaddq_f64(a, b); }
CSM_INLINE vd vd_sub(vd a, vd b) { return vsubq_f64(a, b); }
CSM_INLINE vd vd_mul(vd a, vd b) { return vmulq_f64(a, b); }
CSM_INLINE vd vd_div(vd a, vd b) { return vdivq_f64(a, b); }
CSM_INLINE vd vd_fma(vd a, vd b, vd c) { return vfmaq_f64(c, a, b); }
CSM_INLINE vd vd_fms(vd a, vd b, vd c) { return vfmaq_f64(vnegq_f64(c), a, b); }
CSM_INLINE vd vd_max(vd a, vd b) { return vmaxq_f64(a, b); }
CSM_INLINE vd vd_min(vd a, vd b) { return vminq_f64(a, b); }
/* NEON has no 64-bit NOT: invert through the 32-bit view (same bits). */
CSM_INLINE vd_mask vd_invert(vd_mask m) { return vreinterpretq_u64_u32(vmvnq_u32(vreinterpretq_u32_u64(m))); }
CSM_INLINE vd_mask vd_not_less(vd a, vd b) { return vd_invert(vcltq_f64(a, b)); }
CSM_INLINE vd_mask vd_not_equal(vd a, vd b) { return vd_invert(vceqq_f64(a, b)); }
CSM_INLINE vd vd_keep(vd_mask keep, vd v) { return vreinterpretq_f64_u64(vandq_u64(keep, vreinterpretq_u64_f64(v))); }
CSM_INLINE vd vd_select(vd_mask m, vd a, vd b) { return vbslq_f64(m, a, b); }
CSM_INLINE vd_mask vd_mask_from_bytes(const uint8_t *p)
{
    uint64x2_t wide = vcombine_u64(vcreate_u64(p[0]), vcreate_u64(p[1]));
    return vtstq_u64(wide, wide);
}
/* For a positive normal v = 2^e * m, m in [1, 2): e (as a double) and m, from the bits. */
CSM_INLINE vd vd_exponent_of(vd v)
{
    const float64x2_t magic = vdupq_n_f64(0x1p52); /* 2^52 + e, read as a double, is exact */
    uint64x2_t field = vshrq_n_u64(vreinterpretq_u64_f64(v), 52);
    return vsubq_f64(vreinterpretq_f64_u64(vorrq_u64(field, vreinterpretq_u64_f64(magic))),
                     vdupq_n_f64(0x1p52 + 1023.0));
}
CSM_INLINE vd vd_mantissa_of(vd v)
{
    uint64x2_t fraction = vandq_u64(vreinterpretq_u64_f64(v), vdupq_n_u64(0x000FFFFFFFFFFFFFULL));
    return vreinterpretq_f64_u64(vorrq_u64(fraction, vreinterpretq_u64_f64(vdupq_n_f64(1.0))));
}
CSM_INLINE vd vd_exponent_from_biased(vd biased)
{
    return vreinterpretq_f64_u64(vshlq_n_u64(vreinterpretq_u64_f64(biased), 52));
}
CSM_INLINE double vd_reduce_max(vd v) { return vmaxvq_f64(v); }
/* The lanes' sum in a fixed tree: the upper half added to the lower, repeatedly. */
CSM_INLINE double vd_reduce_add_halves(vd v) { return vgetq_lane_f64(v, 0) + vgetq_lane_f64(v, 1); }
CSM_INLINE vd_count vd_count_zero(void) { return vdupq_n_s64(0); }
CSM_INLINE vd_count vd_count_add(vd_count c, vd_mask m) { return vsubq_s64(c, vreinterpretq_s64_u64(m)); }
CSM_INLINE void vd_count_store(int64_t *p, vd_count c) { vst1q_s64(p, c); }

#endif /* CSM_VECTOR_NEON_H */
