/* An 8x8 float transpose in 256-bit registers, for the vocabularies whose
 * target includes AVX2 (avx2, avx512): the short-row tiles' transposes. */
#ifndef CSM_TRANSPOSE_8X8_AVX_H
#define CSM_TRANSPOSE_8X8_AVX_H

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

/* Transposes the 8x8 float block at source (rows source_stride apart) into
 * destination (rows destination_stride apart): 8 loads, 24 shuffles, 8 stores. */
CSM_INLINE void vf_transpose_8x8(const float *source, int64_t source_stride, float *destination,
                                 int64_t destination_stride)
{
    __m256 r[8];
    for (int k = 0; k < 8; k++)
        r[k] = _mm256_loadu_ps(source + k * source_stride);
    transpose_8x8_registers(r);
    for (int k = 0; k < 8; k++)
        _mm256_storeu_ps(destination + k * destination_stride, r[k]);
}

/* The first `lanes` (0..8) lanes set. */
CSM_INLINE __m256i transpose_lane_mask(int64_t lanes)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* An edge block: the top-left rows x columns (each 1..8) of the block, with
 * masked loads and stores, so nothing outside it is read or written. */
CSM_INLINE void vf_transpose_8x8_edge(const float *source, int64_t source_stride, float *destination,
                                      int64_t destination_stride, int64_t rows, int64_t columns)
{
    const __m256i column_mask = transpose_lane_mask(columns), row_mask = transpose_lane_mask(rows);
    __m256 r[8];
    for (int k = 0; k < 8; k++)
        r[k] = k < rows ? _mm256_maskload_ps(source + k * source_stride, column_mask) : _mm256_setzero_ps();
    transpose_8x8_registers(r);
    for (int k = 0; k < columns; k++)
        _mm256_maskstore_ps(destination + k * destination_stride, row_mask, r[k]);
}

#endif /* CSM_TRANSPOSE_8X8_AVX_H */
