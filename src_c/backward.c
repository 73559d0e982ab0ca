/* The gradient driver: softmax / log_softmax vector-Jacobian products over
 * the middle axis of (outer, n, inner) arrays, chunks of rows or column
 * tiles spread over threads (per type: backward_body.h).  A slice is always
 * reduced whole by one thread, so results are bitwise identical for any
 * thread count. */
#include <stddef.h>

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

/* Short rows (tiled by the kernel) are shared in multiples of this, its widest
 * tile; longer rows one by one. */
#define ROW_GRANULE 32

#define ELEMENT float
#define SUFFIX f32
#include "backward_body.h"
#undef ELEMENT
#undef SUFFIX

#define ELEMENT double
#define SUFFIX f64
#include "backward_body.h"
#undef ELEMENT
#undef SUFFIX
