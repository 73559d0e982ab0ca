/* AArch64 Advanced SIMD kernels: simd_template.h instantiated with 128-bit
 * vectors.  NEON is part of the aarch64 baseline, so unlike the x86 kernels
 * this needs no target pragma and no CPU check; on other architectures this
 * file compiles to the NULL getter alone.  Tested on x86-64 under qemu-user
 * by tests/c/run_aarch64.sh. */
#include "kernel_table.h"

#if defined(__aarch64__) || defined(_M_ARM64)
#include "vector_neon.h"

/* GCC 12 at -O2 cannot see that the column kernels fill partials[0, columns)
 * before reading them (the lanes of every vector add up to `columns`) and
 * warns -Wmaybe-uninitialized for the 2-lane float64 tiles only. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "simd_template.h"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

const csm_kernel_table *csm_kernels_neon(void) { return &table_neon; }
#else
const csm_kernel_table *csm_kernels_neon(void) { return 0; }
#endif
