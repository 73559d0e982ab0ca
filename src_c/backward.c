/* The gradient driver: softmax / log_softmax vector-Jacobian products over
 * the middle axis of (outer, n, inner) arrays, chunks of rows or column
 * tiles spread over threads.  A slice is always reduced whole by one thread,
 * so results are bitwise identical for any thread count. */
#include <stddef.h>

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

/* Rows per work chunk are multiples of this (the widest short-row tile). */
#define ROW_GRANULE 32

#define BACKWARD_DRIVER(ELEMENT, SUFFIX)                                                                               \
    int csm_backward_##SUFFIX(csm_operation operation, const ELEMENT *grad, const ELEMENT *s, const uint8_t *where,    \
                              ELEMENT *out, int64_t outer, int64_t n, int64_t inner, int max_threads)                  \
    {                                                                                                                  \
        if (outer < 0 || n < 0 || inner < 0 || (operation != CSM_SOFTMAX && operation != CSM_LOG_SOFTMAX))             \
            return CSM_ERROR_BAD_ARGUMENT;                                                                             \
        if (outer == 0 || n == 0 || inner == 0)                                                                        \
            return CSM_OK;                                                                                             \
        const csm_kernel_table *kernels = csm_current_kernels();                                                       \
        const int rows = inner == 1;                                                                                   \
        const int64_t tile = rows ? 1 : kernels->column_tile_##SUFFIX;                                                 \
        const int64_t tiles = (inner + tile - 1) / tile, items = outer * tiles;                                        \
        const int threads = csm_threads_for(outer * n * inner, items, max_threads);                                    \
        csm_work work = csm_work_for(items, threads, rows ? ROW_GRANULE : 1);                                          \
        CSM_PARALLEL(threads, {                                                                                        \
            int64_t begin, end;                                                                                        \
            while (csm_work_take(&work, &begin, &end)) {                                                               \
                if (rows) {                                                                                            \
                    kernels->backward_##SUFFIX(grad + begin * n, s + begin * n, where ? where + begin * n : NULL,      \
                                               out + begin * n, n, 1, end - begin, operation);                         \
                    continue;                                                                                          \
                }                                                                                                      \
                for (int64_t item = begin; item < end; item++) {                                                       \
                    const int64_t slab = item / tiles, first_column = (item % tiles) * tile;                           \
                    const int64_t columns = inner - first_column < tile ? inner - first_column : tile;                 \
                    const int64_t offset = slab * n * inner + first_column;                                            \
                    kernels->backward_##SUFFIX(grad + offset, s + offset, where ? where + offset : NULL, out + offset, \
                                               n, inner, columns, operation);                                          \
                }                                                                                                      \
            }                                                                                                          \
        });                                                                                                            \
        return CSM_OK;                                                                                                 \
    }

BACKWARD_DRIVER(float, f32)
BACKWARD_DRIVER(double, f64)
