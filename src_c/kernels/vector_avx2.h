/* 256-bit vector vocabulary for simd_template.h (AVX2 + FMA).
 * vf: 8 floats, vd: 4 doubles, masks are full-width compare results. */
#ifndef CSM_VECTOR_AVX2_H
#define CSM_VECTOR_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernel_table.h"

#define CSM_ISA_SUFFIX avx2
#define VF_LANES 8
#define VD_LANES 4

typedef __m256 vf;
typedef __m256d vd;
typedef __m256 vf_mask;
typedef __m256d vd_mask;
typedef __m256i vf_count; /* int32 lanes */
typedef __m256i vd_count; /* int64 lanes */

/* ---- float32 ---- */
CSM_INLINE vf vf_set1(float a) { return _mm256_set1_ps(a); }
CSM_INLINE vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
CSM_INLINE void vf_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
CSM_INLINE __m256i vf_tail_mask(int64_t count)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* The first `count` (< VF_LANES) lanes from p, the others `fill`. */
CSM_INLINE vf vf_load_partial(const float *p, int64_t count, float fill)
{
    __m256i mask = vf_tail_mask(count);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
}
CSM_INLINE void vf_store_partial(float *p, vf v, int64_t count) { _mm256_maskstore_ps(p, vf_tail_mask(count), v); }
/* Strided access for column tiles: lanes are consecutive columns, so plain loads. */
CSM_INLINE vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
CSM_INLINE vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
CSM_INLINE vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
CSM_INLINE vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
CSM_INLINE vf vf_fms(vf a, vf b, vf c) { return _mm256_fmsub_ps(a, b, c); } /* a * b - c, one rounding */
/* min/max return the second operand when either is NaN: callers put the value that must propagate second. */
CSM_INLINE vf vf_max(vf a, vf b) { return _mm256_max_ps(a, b); }
CSM_INLINE vf vf_min(vf a, vf b) { return _mm256_min_ps(a, b); }
CSM_INLINE vf_mask vf_not_less(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NLT_UQ); }  /* true for NaN */
CSM_INLINE vf_mask vf_not_equal(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); } /* true for NaN */
CSM_INLINE vf vf_keep(vf_mask keep, vf v) { return _mm256_and_ps(keep, v); }             /* 0 where !keep */
CSM_INLINE vf vf_select(vf_mask m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }     /* m ? a : b */
/* Lane j true where the byte p[j] is nonzero (a NumPy bool mask). */
CSM_INLINE vf_mask vf_mask_from_bytes(const uint8_t *p)
{
    __m256i wide = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(wide, _mm256_setzero_si256()));
}
/* 2^n from the magic-biased value whose low mantissa bits hold n + 127. */
CSM_INLINE vf vf_exponent_from_biased(vf biased)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23));
}
CSM_INLINE float vf_reduce_max(vf v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
CSM_INLINE vd vd_from_vf_low(vf v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
CSM_INLINE vd vd_from_vf_high(vf v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
CSM_INLINE vf vf_from_vd_pair(vd low, vd high)
{
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(low)), _mm256_cvtpd_ps(high), 1);
}
CSM_INLINE vf_count vf_count_zero(void) { return _mm256_setzero_si256(); }
CSM_INLINE vf_count vf_count_add(vf_count c, vf_mask m) { return _mm256_sub_epi32(c, _mm256_castps_si256(m)); }
CSM_INLINE void vf_count_store(int32_t *p, vf_count c) { _mm256_storeu_si256((__m256i *)p, c); }

#include "transpose_avx.h"

/* ---- float64 ---- */
CSM_INLINE vd vd_set1(double a) { return _mm256_set1_pd(a); }
CSM_INLINE vd vd_zero(void) { return _mm256_setzero_pd(); }
CSM_INLINE vd vd_load(const double *p) { return _mm256_loadu_pd(p); }
CSM_INLINE void vd_store(double *p, vd v) { _mm256_storeu_pd(p, v); }
CSM_INLINE __m256i vd_tail_mask(int64_t count)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(count), _mm256_setr_epi64x(0, 1, 2, 3));
}
CSM_INLINE vd vd_load_partial(const double *p, int64_t count, double fill)
{
    __m256i mask = vd_tail_mask(count);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, mask), _mm256_castsi256_pd(mask));
}
CSM_INLINE void vd_store_partial(double *p, vd v, int64_t count) { _mm256_maskstore_pd(p, vd_tail_mask(count), v); }
CSM_INLINE vd vd_add(vd a, vd b) { return _mm256_add_pd(a, b); }
CSM_INLINE vd vd_sub(vd a, vd b) { return _mm256_sub_pd(a, b); }
CSM_INLINE vd vd_mul(vd a, vd b) { return _mm256_mul_pd(a, b); }
CSM_INLINE vd vd_div(vd a, vd b) { return _mm256_div_pd(a, b); }
CSM_INLINE vd vd_fma(vd a, vd b, vd c) { return _mm256_fmadd_pd(a, b, c); }
CSM_INLINE vd vd_fms(vd a, vd b, vd c) { return _mm256_fmsub_pd(a, b, c); }
CSM_INLINE vd vd_max(vd a, vd b) { return _mm256_max_pd(a, b); }
CSM_INLINE vd vd_min(vd a, vd b) { return _mm256_min_pd(a, b); }
CSM_INLINE vd_mask vd_not_less(vd a, vd b) { return _mm256_cmp_pd(a, b, _CMP_NLT_UQ); }
CSM_INLINE vd_mask vd_not_equal(vd a, vd b) { return _mm256_cmp_pd(a, b, _CMP_NEQ_UQ); }
CSM_INLINE vd vd_keep(vd_mask keep, vd v) { return _mm256_and_pd(keep, v); }
CSM_INLINE vd vd_select(vd_mask m, vd a, vd b) { return _mm256_blendv_pd(b, a, m); }
CSM_INLINE vd_mask vd_mask_from_bytes(const uint8_t *p)
{
    int32_t word;
    memcpy(&word, p, sizeof word);
    __m256i wide = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(word));
    return _mm256_castsi256_pd(_mm256_cmpgt_epi64(wide, _mm256_setzero_si256()));
}
/* For a positive normal v = 2^e * m, m in [1, 2): e (as a double) and m, from the bits. */
CSM_INLINE vd vd_exponent_of(vd v)
{
    const __m256d magic = _mm256_set1_pd(0x1p52); /* 2^52 + e, read as a double, is exact */
    __m256i field = _mm256_srli_epi64(_mm256_castpd_si256(v), 52);
    return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(field, _mm256_castpd_si256(magic))),
                         _mm256_set1_pd(0x1p52 + 1023.0));
}
CSM_INLINE vd vd_mantissa_of(vd v)
{
    __m256i fraction = _mm256_and_si256(_mm256_castpd_si256(v), _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL));
    return _mm256_castsi256_pd(_mm256_or_si256(fraction, _mm256_castpd_si256(_mm256_set1_pd(1.0))));
}
CSM_INLINE vd vd_exponent_from_biased(vd biased)
{
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52));
}
CSM_INLINE double vd_reduce_max(vd v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}
/* The lanes' sum in a fixed tree: the upper half added to the lower, repeatedly. */
CSM_INLINE double vd_reduce_add_halves(vd v)
{
    __m128d pair = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)));
}
CSM_INLINE vd_count vd_count_zero(void) { return _mm256_setzero_si256(); }
CSM_INLINE vd_count vd_count_add(vd_count c, vd_mask m) { return _mm256_sub_epi64(c, _mm256_castpd_si256(m)); }
CSM_INLINE void vd_count_store(int64_t *p, vd_count c) { _mm256_storeu_si256((__m256i *)p, c); }

#endif /* CSM_VECTOR_AVX2_H */
