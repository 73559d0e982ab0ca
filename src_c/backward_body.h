/* backward.c for one element type, included with ELEMENT and SUFFIX defined. */

#define BACKWARD_FN_(name, suffix) name##_##suffix
#define BACKWARD_FN2(name, suffix) BACKWARD_FN_(name, suffix)
#define BACKWARD_FN(name) BACKWARD_FN2(name, SUFFIX)
#define BACKWARD_KERNEL(table) (table)->BACKWARD_FN2(backward, SUFFIX)
#define COLUMN_TILE(table) (table)->BACKWARD_FN2(column_tile, SUFFIX)

int BACKWARD_FN(csm_backward)(csm_operation operation, const ELEMENT *grad, const ELEMENT *s, const uint8_t *where,
                              ELEMENT *out, int64_t outer, int64_t n, int64_t inner, int max_threads)
{
    if (outer < 0 || n < 0 || inner < 0 || (operation != CSM_SOFTMAX && operation != CSM_LOG_SOFTMAX))
        return CSM_ERROR_BAD_ARGUMENT;
    if (outer == 0 || n == 0 || inner == 0)
        return CSM_OK;
    const csm_kernel_table *kernels = csm_current_kernels();
    const int rows = inner == 1;
    const int64_t tile = rows ? 1 : COLUMN_TILE(kernels);
    const int64_t tiles = (inner + tile - 1) / tile, items = outer * tiles;
    const int threads = csm_threads_for(outer * n * inner, items, max_threads);
    csm_work work = csm_work_for(items, threads, rows && n <= kernels->short_row_limit ? ROW_GRANULE : 1);
    CSM_PARALLEL(threads, {
        int64_t begin, end;
        while (csm_work_take(&work, &begin, &end)) {
            if (rows) { /* one call per chunk of rows: short rows are tiled */
                BACKWARD_KERNEL(kernels)(grad + begin * n, s + begin * n, where ? where + begin * n : NULL,
                                         out + begin * n, n, 1, end - begin, operation);
                continue;
            }
            for (int64_t item = begin; item < end; item++) {
                const int64_t slab = item / tiles, first_column = (item % tiles) * tile;
                const int64_t columns = inner - first_column < tile ? inner - first_column : tile;
                const int64_t offset = slab * n * inner + first_column;
                BACKWARD_KERNEL(kernels)(grad + offset, s + offset, where ? where + offset : NULL, out + offset, n,
                                         inner, columns, operation);
            }
        }
    });
    return CSM_OK;
}

#undef BACKWARD_FN
#undef BACKWARD_FN2
#undef BACKWARD_FN_
#undef BACKWARD_KERNEL
#undef COLUMN_TILE
