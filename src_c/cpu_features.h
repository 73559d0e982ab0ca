/* What the CPU and the operating system let us execute. */
#ifndef CSM_CPU_FEATURES_H
#define CSM_CPU_FEATURES_H

int csm_cpu_has_avx2_fma(void); /* AVX2 + FMA, YMM state enabled by the OS */
int csm_cpu_has_avx512(void);   /* AVX-512 F, BW and VL, ZMM and opmask state enabled by the OS */

#endif
