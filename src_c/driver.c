/* Shapes -> kernels for both element types: the constants that fix how a
 * reduction is cut (never from the thread count, so results are bitwise
 * identical for any number of threads).  The per-type driver is
 * driver_body.h; the threading policy is parallel.h; the entry points are
 * csm_reduce_f32/f64 and csm_reduce_options_f32/f64 of csoftmax.h. */
#include <math.h>
#include <stdlib.h>

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

/* Rows up to SHORT_ROW_BYTES run max | exp-store-sum | scale while the row
 * stays in L2; longer rows are cut into BLOCK_BYTES blocks (L1-sized, so a
 * block's max and exp-sum passes share one load from memory). */
#define SHORT_ROW_BYTES (128 * 1024)
#define BLOCK_BYTES (32 * 1024)
/* Outputs that long rows on one thread complete before starting the next
 * rows (driver_body.h): about what L2 holds beside the blocks streaming through. */
#define LONG_ROW_BATCH_BYTES (768 * 1024)
/* Rows per work chunk are multiples of this where the short-row tile kernel
 * runs (its widest tile); longer rows are shared one by one, so that a few
 * rows of 100 KB still spread over every thread. */
#define SHORT_ROW_GRANULE 32

typedef struct {
    const csm_kernel_table *kernels;
    int operation, precision;
    int64_t outer, n, inner;
    int64_t blocks;                     /* long rows: blocks per row */
    const uint8_t *where;               /* NULL or the mask, laid out like x */
    const csm_temperature *temperature; /* NULL for temperature 1 */
} csm_reduction;

#define ELEMENT float
#define SUFFIX f32
#include "driver_body.h"
#undef ELEMENT
#undef SUFFIX

#define ELEMENT double
#define SUFFIX f64
#include "driver_body.h"
#undef ELEMENT
#undef SUFFIX
