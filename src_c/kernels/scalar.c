/* Portable C kernels: built on every platform, the baseline the dispatcher
 * falls back to, and the C-level reference the SIMD kernels are tested
 * against.  The kernel bodies live in scalar_body.h, instantiated here for
 * float and double. */
#include <math.h>
#include <stddef.h>

#include "kernel_table.h"

#define SCALAR_COLUMN_TILE 64

#define ELEMENT float
#define SUFFIX f32
#include "scalar_body.h"
#undef ELEMENT
#undef SUFFIX

#define ELEMENT double
#define SUFFIX f64
#include "scalar_body.h"
#undef ELEMENT
#undef SUFFIX

const csm_kernel_table csm_kernels_scalar = {
    .name = "scalar",
    .max_f32 = max_f32_scalar,
    .max_f64 = max_f64_scalar,
    .partial_f32 = partial_f32_scalar,
    .partial_f64 = partial_f64_scalar,
    .mask_f32 = mask_f32_scalar,
    .mask_f64 = mask_f64_scalar,
    .scale_f32 = scale_f32_scalar,
    .scale_f64 = scale_f64_scalar,
    .finish_f32 = finish_f32_scalar,
    .finish_f64 = finish_f64_scalar,
    .columns_f32 = columns_f32_scalar,
    .columns_f64 = columns_f64_scalar,
    .backward_f32 = backward_f32_scalar,
    .backward_f64 = backward_f64_scalar,
    .column_tile_f32 = SCALAR_COLUMN_TILE,
    .column_tile_f64 = SCALAR_COLUMN_TILE,
};
