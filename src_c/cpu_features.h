/* What the CPU and the operating system let us execute. */
#ifndef CSM_CPU_FEATURES_H
#define CSM_CPU_FEATURES_H

int csm_cpu_has_avx2_fma(void); /* AVX2 + FMA, YMM state enabled by the OS */
int csm_cpu_has_avx512f(void);  /* AVX-512F, ZMM and opmask state enabled by the OS */

#endif
