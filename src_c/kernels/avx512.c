/* AVX-512 (F, BW, VL) kernels: simd_template.h instantiated with 512-bit
 * vectors; the tests run them wherever the CPU has AVX-512 (the same
 * template is also tested through avx2.c and neon.c). */
#include "kernel_table.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "isa_target.h"

CSM_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma")
#include "vector_avx512.h"

#include "simd_template.h"
CSM_TARGET_END

const csm_kernel_table *csm_kernels_avx512(void) { return &table_avx512; }
#else
const csm_kernel_table *csm_kernels_avx512(void) { return 0; }
#endif
