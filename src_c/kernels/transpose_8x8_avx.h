/* An 8x8 float transpose in 256-bit registers, for the vocabularies whose
 * target includes AVX (avx2, avx512): the short-row tiles' transposes. */
#ifndef CSM_TRANSPOSE_8X8_AVX_H
#define CSM_TRANSPOSE_8X8_AVX_H

#include <immintrin.h>
#include <stdint.h>

#include "kernel_table.h"

/* Transposes the 8x8 float block at source (rows source_stride apart) into
 * destination (rows destination_stride apart): 8 loads, 24 shuffles, 8 stores. */
#define VF_HAS_TRANSPOSE_8X8 1
CSM_INLINE void vf_transpose_8x8(const float *source, int64_t source_stride, float *destination,
                                 int64_t destination_stride)
{
    __m256 r[8], t[8];
    for (int k = 0; k < 8; k++)
        r[k] = _mm256_loadu_ps(source + k * source_stride);
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_ps(destination + k * destination_stride, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps(destination + (k + 4) * destination_stride, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
    }
}

#endif /* CSM_TRANSPOSE_8X8_AVX_H */
