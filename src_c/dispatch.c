/* The ISA table: which kernels exist, which this CPU can run, which one is in
 * use.  Adding an ISA is one kernel file plus one row in `isas`. */
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "csoftmax.h"
#include "dispatch.h"

static const csm_kernel_table *scalar_kernels(void) { return &csm_kernels_scalar; }
static int always(void) { return 1; }

static const struct {
    const char *name;
    const csm_kernel_table *(*kernels)(void); /* NULL result: not compiled for this architecture */
    int (*cpu_supports)(void);
} isas[CSM_ISA_COUNT] = {
    [CSM_ISA_SCALAR] = {"scalar", scalar_kernels, always},
    [CSM_ISA_AVX2] = {"avx2", csm_kernels_avx2, csm_cpu_has_avx2_fma},
    [CSM_ISA_AVX512] = {"avx512", csm_kernels_avx512, csm_cpu_has_avx512},
    [CSM_ISA_NEON] = {"neon", csm_kernels_neon, always}, /* aarch64 baseline: NULL kernels elsewhere */
};

static const csm_kernel_table *current = &csm_kernels_scalar;
static int current_isa = CSM_ISA_SCALAR;

const csm_kernel_table *csm_current_kernels(void) { return current; }

const char *csm_isa_name(int isa) { return isa >= 0 && isa < CSM_ISA_COUNT ? isas[isa].name : "unknown"; }

int csm_isa_from_name(const char *name)
{
    for (int isa = 0; isa < CSM_ISA_COUNT; isa++)
        if (strcmp(name, isas[isa].name) == 0)
            return isa;
    return -1;
}

int csm_isa_available(int isa)
{
    return isa >= 0 && isa < CSM_ISA_COUNT && isas[isa].kernels && isas[isa].kernels() != NULL &&
           isas[isa].cpu_supports();
}

int csm_get_isa(void) { return current_isa; }

int csm_set_isa(int isa)
{
    if (!csm_isa_available(isa))
        return CSM_ERROR_BAD_ARGUMENT;
    current = isas[isa].kernels();
    current_isa = isa;
    return CSM_OK;
}

static int best_isa_up_to(int cap)
{
    for (int isa = cap; isa > CSM_ISA_SCALAR; isa--)
        if (csm_isa_available(isa))
            return isa;
    return CSM_ISA_SCALAR;
}

int csm_dispatch_init(void)
{
    const char *requested = getenv("CSOFTMAX_ISA");
    int status = CSM_ISA_INIT_OK;
    int cap = CSM_ISA_COUNT - 1;
    if (requested && *requested) {
        int isa = csm_isa_from_name(requested);
        if (isa < 0)
            status = CSM_ISA_INIT_UNKNOWN_NAME;
        else if (!csm_isa_available(isa))
            status = CSM_ISA_INIT_UNAVAILABLE;
        else
            cap = isa;
    }
    csm_set_isa(best_isa_up_to(cap));
    return status;
}
