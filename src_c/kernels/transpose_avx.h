/* 8x8 float and 4x4 double transposes in 256-bit registers, for the
 * vocabularies whose target includes AVX2 (avx2, avx512): the short-row
 * tiles' transposes. */
#ifndef CSM_TRANSPOSE_AVX_H
#define CSM_TRANSPOSE_AVX_H

#include <immintrin.h>
#include <stdint.h>

#include "kernel_table.h"

#define VF_HAS_TRANSPOSE_8X8 1

/* rows[k] becomes column k of the block: 24 shuffles. */
CSM_INLINE void transpose_8x8_registers(__m256 rows[8])
{
    __m256 t[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(rows[k], rows[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(rows[k], rows[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        rows[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        rows[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        rows[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        rows[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        t[k] = _mm256_permute2f128_ps(rows[k], rows[k + 4], 0x20);
        t[k + 4] = _mm256_permute2f128_ps(rows[k], rows[k + 4], 0x31);
    }
    for (int k = 0; k < 8; k++)
        rows[k] = t[k];
}

/* The first `lanes` (0..8) lanes set. */
CSM_INLINE __m256i transpose_lane_mask(int64_t lanes)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Transposes the top-left rows x columns (each 1..8) of the 8x8 float block
 * at source (rows source_stride apart) into destination (rows
 * destination_stride apart): 8 loads, 24 shuffles, 8 stores; an edge block
 * (either count short) uses masked loads and stores, so nothing outside it
 * is read or written. */
CSM_INLINE void vf_transpose_8x8(const float *source, int64_t source_stride, float *destination,
                                 int64_t destination_stride, int64_t rows, int64_t columns)
{
    __m256 r[8];
    if (rows == 8 && columns == 8) {
        for (int k = 0; k < 8; k++)
            r[k] = _mm256_loadu_ps(source + k * source_stride);
        transpose_8x8_registers(r);
        for (int k = 0; k < 8; k++)
            _mm256_storeu_ps(destination + k * destination_stride, r[k]);
        return;
    }
    const __m256i column_mask = transpose_lane_mask(columns), row_mask = transpose_lane_mask(rows);
    for (int k = 0; k < 8; k++)
        r[k] = k < rows ? _mm256_maskload_ps(source + k * source_stride, column_mask) : _mm256_setzero_ps();
    transpose_8x8_registers(r);
    for (int k = 0; k < columns; k++)
        _mm256_maskstore_ps(destination + k * destination_stride, row_mask, r[k]);
}

#define VD_HAS_TRANSPOSE_4X4 1

/* As transpose_8x8_registers, for 4 doubles: 8 shuffles. */
CSM_INLINE void transpose_4x4_registers(__m256d rows[4])
{
    __m256d t0 = _mm256_unpacklo_pd(rows[0], rows[1]), t1 = _mm256_unpackhi_pd(rows[0], rows[1]);
    __m256d t2 = _mm256_unpacklo_pd(rows[2], rows[3]), t3 = _mm256_unpackhi_pd(rows[2], rows[3]);
    rows[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    rows[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    rows[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    rows[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* The first `lanes` (0..4) 64-bit lanes set. */
CSM_INLINE __m256i transpose_lane_mask_64(int64_t lanes)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(lanes), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* As vf_transpose_8x8, for a 4x4 double block (rows, columns 1..4). */
CSM_INLINE void vd_transpose_4x4(const double *source, int64_t source_stride, double *destination,
                                 int64_t destination_stride, int64_t rows, int64_t columns)
{
    __m256d r[4];
    if (rows == 4 && columns == 4) {
        for (int k = 0; k < 4; k++)
            r[k] = _mm256_loadu_pd(source + k * source_stride);
        transpose_4x4_registers(r);
        for (int k = 0; k < 4; k++)
            _mm256_storeu_pd(destination + k * destination_stride, r[k]);
        return;
    }
    const __m256i column_mask = transpose_lane_mask_64(columns), row_mask = transpose_lane_mask_64(rows);
    for (int k = 0; k < 4; k++)
        r[k] = k < rows ? _mm256_maskload_pd(source + k * source_stride, column_mask) : _mm256_setzero_pd();
    transpose_4x4_registers(r);
    for (int k = 0; k < columns; k++)
        _mm256_maskstore_pd(destination + k * destination_stride, row_mask, r[k]);
}

#endif /* CSM_TRANSPOSE_AVX_H */
