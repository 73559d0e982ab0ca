/* The kernel table in use (dispatch.c). */
#ifndef CSM_DISPATCH_H
#define CSM_DISPATCH_H
#include "kernels/kernel_table.h"

const csm_kernel_table *csm_current_kernels(void);
/* Selects the best ISA, capped by CSOFTMAX_ISA; returns CSM_ISA_INIT_*. */
int csm_dispatch_init(void);

#endif
