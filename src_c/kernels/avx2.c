/* AVX2 + FMA kernels: simd_template.h instantiated with 256-bit vectors. */
#include "kernel_table.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "isa_target.h"

CSM_TARGET_BEGIN("avx2,fma")
#include "vector_avx2.h"

#include "simd_template.h"
CSM_TARGET_END

const csm_kernel_table *csm_kernels_avx2(void) { return &table_avx2; }
#else
const csm_kernel_table *csm_kernels_avx2(void) { return 0; }
#endif
