/* 512-bit vector vocabulary for simd_template.h (AVX-512 F, BW, VL).
 * vf: 16 floats, vd: 8 doubles, masks are k-registers. */
#ifndef CSM_VECTOR_AVX512_H
#define CSM_VECTOR_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "kernel_table.h"

#define CSM_ISA_SUFFIX avx512
#define VF_LANES 16
#define VD_LANES 8
/* float64 column tiles of 4 vectors (256-byte rows): 32 registers hold their
 * state without spills; (1000, 1000) axis=0 ran 10-20% faster than with 2 on
 * an Emerald Rapids Xeon (no change in bits: columns are independent lanes) */
#define COLUMN_VECTORS_F64 4

typedef __m512 vf;
typedef __m512d vd;
typedef __mmask16 vf_mask;
typedef __mmask8 vd_mask;
typedef __m512i vf_count; /* int32 lanes */
typedef __m512i vd_count; /* int64 lanes */

/* ---- float32 ---- */
CSM_INLINE vf vf_set1(float a) { return _mm512_set1_ps(a); }
CSM_INLINE vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
CSM_INLINE void vf_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
CSM_INLINE __mmask16 vf_tail_mask(int64_t count) { return (__mmask16)((1u << count) - 1u); }
CSM_INLINE vf vf_load_partial(const float *p, int64_t count, float fill)
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), vf_tail_mask(count), p);
}
CSM_INLINE void vf_store_partial(float *p, vf v, int64_t count) { _mm512_mask_storeu_ps(p, vf_tail_mask(count), v); }
CSM_INLINE vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
CSM_INLINE vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
CSM_INLINE vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
CSM_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
CSM_INLINE vf vf_fms(vf a, vf b, vf c) { return _mm512_fmsub_ps(a, b, c); } /* a * b - c, one rounding */
/* min/max return the second operand when either is NaN: callers put the value that must propagate second. */
CSM_INLINE vf vf_max(vf a, vf b) { return _mm512_max_ps(a, b); }
CSM_INLINE vf vf_min(vf a, vf b) { return _mm512_min_ps(a, b); }
CSM_INLINE vf_mask vf_not_less(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ); }
CSM_INLINE vf_mask vf_not_equal(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
CSM_INLINE vf vf_keep(vf_mask keep, vf v) { return _mm512_maskz_mov_ps(keep, v); }
CSM_INLINE vf vf_select(vf_mask m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); } /* m ? a : b */
/* Lane j true where the byte p[j] is nonzero (a NumPy bool mask): one byte
 * test (AVX-512 BW + VL), no widening shuffle. */
CSM_INLINE vf_mask vf_mask_from_bytes(const uint8_t *p)
{
    const __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    return _mm_test_epi8_mask(bytes, bytes);
}
CSM_INLINE vf vf_exponent_from_biased(vf biased)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(biased), 23));
}
CSM_INLINE float vf_reduce_max(vf v) { return _mm512_reduce_max_ps(v); }
CSM_INLINE vd vd_from_vf_low(vf v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
CSM_INLINE vd vd_from_vf_high(vf v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
CSM_INLINE vf vf_from_vd_pair(vd low, vd high)
{
    __m512d packed = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(low))),
                                        _mm256_castps_pd(_mm512_cvtpd_ps(high)), 1);
    return _mm512_castpd_ps(packed);
}
CSM_INLINE vf_count vf_count_zero(void) { return _mm512_setzero_si512(); }
CSM_INLINE vf_count vf_count_add(vf_count c, vf_mask m) { return _mm512_mask_add_epi32(c, m, c, _mm512_set1_epi32(1)); }
CSM_INLINE void vf_count_store(int32_t *p, vf_count c) { _mm512_storeu_si512((void *)p, c); }

#include "transpose_avx.h"

/* ---- float64 ---- */
CSM_INLINE vd vd_set1(double a) { return _mm512_set1_pd(a); }
CSM_INLINE vd vd_zero(void) { return _mm512_setzero_pd(); }
CSM_INLINE vd vd_load(const double *p) { return _mm512_loadu_pd(p); }
CSM_INLINE void vd_store(double *p, vd v) { _mm512_storeu_pd(p, v); }
CSM_INLINE __mmask8 vd_tail_mask(int64_t count) { return (__mmask8)((1u << count) - 1u); }
CSM_INLINE vd vd_load_partial(const double *p, int64_t count, double fill)
{
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), vd_tail_mask(count), p);
}
CSM_INLINE void vd_store_partial(double *p, vd v, int64_t count) { _mm512_mask_storeu_pd(p, vd_tail_mask(count), v); }
CSM_INLINE vd vd_add(vd a, vd b) { return _mm512_add_pd(a, b); }
CSM_INLINE vd vd_sub(vd a, vd b) { return _mm512_sub_pd(a, b); }
CSM_INLINE vd vd_mul(vd a, vd b) { return _mm512_mul_pd(a, b); }
CSM_INLINE vd vd_div(vd a, vd b) { return _mm512_div_pd(a, b); }
CSM_INLINE vd vd_fma(vd a, vd b, vd c) { return _mm512_fmadd_pd(a, b, c); }
CSM_INLINE vd vd_fms(vd a, vd b, vd c) { return _mm512_fmsub_pd(a, b, c); }
CSM_INLINE vd vd_max(vd a, vd b) { return _mm512_max_pd(a, b); }
CSM_INLINE vd vd_min(vd a, vd b) { return _mm512_min_pd(a, b); }
CSM_INLINE vd_mask vd_not_less(vd a, vd b) { return _mm512_cmp_pd_mask(a, b, _CMP_NLT_UQ); }
CSM_INLINE vd_mask vd_not_equal(vd a, vd b) { return _mm512_cmp_pd_mask(a, b, _CMP_NEQ_UQ); }
CSM_INLINE vd vd_keep(vd_mask keep, vd v) { return _mm512_maskz_mov_pd(keep, v); }
CSM_INLINE vd vd_select(vd_mask m, vd a, vd b) { return _mm512_mask_blend_pd(m, b, a); }
CSM_INLINE vd_mask vd_mask_from_bytes(const uint8_t *p)
{
    const __m128i bytes = _mm_loadl_epi64((const __m128i *)p);
    return (vd_mask)_mm_test_epi8_mask(bytes, bytes);
}
/* For a positive normal v = 2^e * m, m in [1, 2): e (as a double) and m. */
CSM_INLINE vd vd_exponent_of(vd v) { return _mm512_getexp_pd(v); }
CSM_INLINE vd vd_mantissa_of(vd v) { return _mm512_getmant_pd(v, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero); }
CSM_INLINE vd vd_exponent_from_biased(vd biased)
{
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(biased), 52));
}
CSM_INLINE double vd_reduce_max(vd v) { return _mm512_reduce_max_pd(v); }
/* The lanes' sum in a fixed tree: the upper half added to the lower, repeatedly. */
CSM_INLINE double vd_reduce_add_halves(vd v)
{
    __m256d quarter = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
    __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(quarter), _mm256_extractf128_pd(quarter, 1));
    return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}
CSM_INLINE vd_count vd_count_zero(void) { return _mm512_setzero_si512(); }
CSM_INLINE vd_count vd_count_add(vd_count c, vd_mask m) { return _mm512_mask_add_epi64(c, m, c, _mm512_set1_epi64(1)); }
CSM_INLINE void vd_count_store(int64_t *p, vd_count c) { _mm512_storeu_si512((void *)p, c); }

#endif /* CSM_VECTOR_AVX512_H */
