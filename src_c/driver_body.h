/* The driver for one element type, included by driver.c with ELEMENT and
 * SUFFIX defined.  It maps an (outer, n, inner) reduction onto the kernels:
 *   inner > 1              column tiles, spread over threads;
 *   inner == 1, short n    whole rows (three passes in cache), spread over threads;
 *   inner == 1, long n     fixed BLOCK_BYTES blocks whose partials combine per
 *                          row in block order, every (row, block) spread over
 *                          threads, so one long row uses every core; softmax
 *                          blocks store exp(x - block max) and are rescaled
 *                          by exp(block max - M) / sum afterwards.
 * Each row's arithmetic depends only on n, never on the thread count, so
 * results are bitwise identical for any number of threads. */

#define DRIVER_FN_(name, suffix) name##_##suffix
#define DRIVER_FN2(name, suffix) DRIVER_FN_(name, suffix)
#define DRIVER_FN(name) DRIVER_FN2(name, SUFFIX)
#define KERNEL_FN_(name, suffix) name##_##suffix
#define KERNEL_FN2(name, suffix) KERNEL_FN_(name, suffix)
#define KERNEL_FN(table, name) (table)->KERNEL_FN2(name, SUFFIX)

static void DRIVER_FN(fill)(ELEMENT *y, int64_t n, ELEMENT value)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = value;
}

/* The outputs of a special row (NaN, +inf, only -inf): NaN where included,
 * 0 (softmax) / -inf (log_softmax) where excluded. */
static void DRIVER_FN(fill_special)(ELEMENT *y, const uint8_t *where, int64_t n, int operation)
{
    if (!where) {
        DRIVER_FN(fill)(y, n, (ELEMENT)NAN);
        return;
    }
    const ELEMENT excluded = operation == CSM_SOFTMAX ? (ELEMENT)0 : (ELEMENT)-INFINITY;
    for (int64_t i = 0; i < n; i++)
        y[i] = where[i] ? (ELEMENT)NAN : excluded;
}

/* A row that fits in cache runs in three steps: its max, its sums (exp,
 * sum and the scale), then its outputs.  short_rows interleaves rows as
 * max(r), outputs(r - 1), sums(r): the wait for a row's max and for its
 * division or log overlaps another row's loop instead of stalling the
 * core; the order of the work changes, not its arithmetic. */
typedef struct {
    const ELEMENT *x;            /* what the passes read (y holding x when masked) */
    const uint8_t *kernel_where; /* the mask the sums read (logsumexp only) */
    const uint8_t *where;
    ELEMENT *y;
    ELEMENT max;
    csm_row_state state;
    csm_row_scale scale;
} DRIVER_FN(row_in_flight);

static void DRIVER_FN(row_max)(const csm_reduction *r, const ELEMENT *x, const uint8_t *where, ELEMENT *y, int64_t n,
                               DRIVER_FN(row_in_flight) * row)
{
    row->where = where;
    row->kernel_where = where;
    row->y = y;
    if (where && r->operation != CSM_LOGSUMEXP) { /* read the mask once: y = x, excluded -inf */
        KERNEL_FN(r->kernels, mask)(x, where, y, n);
        x = y;
        row->kernel_where = NULL;
    }
    row->x = x;
    row->max = KERNEL_FN(r->kernels, max)(x, row->kernel_where, n);
}

static void DRIVER_FN(row_sums)(const csm_reduction *r, int64_t n, DRIVER_FN(row_in_flight) * row)
{
    csm_partial partial;
    const int store = r->operation == CSM_SOFTMAX;
    KERNEL_FN(r->kernels, partial)(row->x, row->kernel_where, store ? row->y : NULL, n, row->max, r->precision,
                                   r->temperature, &partial);
    row->state = sizeof(ELEMENT) == sizeof(float)
                     ? csm_row_scale_float32(&partial, r->operation, r->temperature, &row->scale)
                     : csm_row_scale_from_partials(&partial, 1, r->operation, r->temperature, &row->scale);
    if (r->operation == CSM_LOGSUMEXP)
        *row->y = (ELEMENT)csm_logsumexp_from_state(row->state, &row->scale);
}

static void DRIVER_FN(row_outputs)(const csm_reduction *r, int64_t n, const DRIVER_FN(row_in_flight) * row)
{
    if (r->operation == CSM_LOGSUMEXP)
        return;
    if (row->state != CSM_ROW_FINITE)
        DRIVER_FN(fill_special)(row->y, row->where, n, r->operation);
    else if (r->operation == CSM_SOFTMAX)
        KERNEL_FN(r->kernels, scale)(row->y, n, r->precision, &row->scale);
    else
        KERNEL_FN(r->kernels, finish)(row->x, NULL, row->y, n, r->operation, r->precision, r->temperature, &row->scale);
}

static void DRIVER_FN(short_rows)(const csm_reduction *r, const ELEMENT *x, ELEMENT *y, int64_t begin, int64_t end)
{
    const int64_t n = r->n, y_row = r->operation == CSM_LOGSUMEXP ? 1 : n;
    if (KERNEL_FN(r->kernels, rows) && n <= r->kernels->short_row_limit) {
        KERNEL_FN(r->kernels, rows)(x + begin * n, r->where ? r->where + begin * n : NULL, y + begin * y_row,
                                    end - begin, n, r->operation, r->precision, r->temperature);
        return;
    }
    DRIVER_FN(row_in_flight) rows[2];
    for (int64_t row = begin; row < end; row++) {
        DRIVER_FN(row_max)(r, x + row * n, r->where ? r->where + row * n : NULL, y + row * y_row, n, &rows[row & 1]);
        if (row > begin)
            DRIVER_FN(row_outputs)(r, n, &rows[(row - 1) & 1]);
        DRIVER_FN(row_sums)(r, n, &rows[row & 1]);
    }
    if (end > begin)
        DRIVER_FN(row_outputs)(r, n, &rows[(end - 1) & 1]);
}

static void DRIVER_FN(column_tiles)(const csm_reduction *r, const ELEMENT *x, ELEMENT *y, int64_t begin, int64_t end)
{
    const int64_t tile = KERNEL_FN(r->kernels, column_tile);
    const int64_t tiles = (r->inner + tile - 1) / tile;
    const int64_t y_slab = r->operation == CSM_LOGSUMEXP ? r->inner : r->n * r->inner;
    for (int64_t item = begin; item < end; item++) {
        const int64_t slab = item / tiles, first_column = (item % tiles) * tile;
        const int64_t columns = r->inner - first_column < tile ? r->inner - first_column : tile;
        const int64_t offset = slab * r->n * r->inner + first_column;
        KERNEL_FN(r->kernels, columns)(x + offset, r->where ? r->where + offset : NULL,
                                       y + slab * y_slab + first_column, r->n, r->inner, columns, r->operation,
                                       r->precision, r->temperature);
    }
}

/* Long rows, phase 1: the partial of every (row, block) item.  Softmax also
 * stores exp((x - block max) / T) in y, so phase 3 only rescales (x is read
 * from memory once); a block of only -inf stores zeros (kernel_table.h). */
static void DRIVER_FN(block_partials)(const csm_reduction *r, const ELEMENT *x, ELEMENT *y, csm_partial *partials,
                                      int64_t begin, int64_t end)
{
    const int64_t block = BLOCK_BYTES / (int64_t)sizeof(ELEMENT);
    const int store = r->operation == CSM_SOFTMAX;
    for (int64_t item = begin; item < end; item++) {
        const int64_t row = item / r->blocks, start = (item % r->blocks) * block;
        const int64_t length = r->n - start < block ? r->n - start : block;
        const int64_t offset = row * r->n + start;
        const ELEMENT *source = x + offset;
        const uint8_t *where = r->where ? r->where + offset : NULL;
        if (where && r->operation != CSM_LOGSUMEXP) { /* as short_row; phase 3 reads y */
            KERNEL_FN(r->kernels, mask)(source, where, y + offset, length);
            source = y + offset;
            where = NULL;
        }
        DRIVER_FN(csm_partial_of)(r->kernels, source, where, store ? y + offset : NULL, length, r->precision,
                                  r->temperature, &partials[item]);
    }
}

/* Long rows, phase 3: outputs of every (row, block) item from its row's scale. */
static void DRIVER_FN(block_outputs)(const csm_reduction *r, const ELEMENT *x, ELEMENT *y, const csm_partial *partials,
                                     const csm_row_state *states, const csm_row_scale *scales, int64_t begin,
                                     int64_t end)
{
    const int64_t block = BLOCK_BYTES / (int64_t)sizeof(ELEMENT);
    for (int64_t item = begin; item < end; item++) {
        const int64_t row = item / r->blocks, start = (item % r->blocks) * block;
        const int64_t length = r->n - start < block ? r->n - start : block;
        const int64_t offset = row * r->n + start;
        const uint8_t *where = r->where ? r->where + offset : NULL;
        if (states[row] != CSM_ROW_FINITE) {
            DRIVER_FN(fill_special)(y + offset, where, length, r->operation);
        } else if (r->operation == CSM_SOFTMAX) {
            if (partials[item].max != -INFINITY) {
                csm_row_scale block_scale;
                csm_block_scale(&partials[item], &scales[row], r->temperature, &block_scale);
                KERNEL_FN(r->kernels, scale)(y + offset, length, r->precision, &block_scale);
            }
        } else {
            const ELEMENT *source = where ? y + offset : x + offset; /* masked: y holds x, excluded -inf */
            KERNEL_FN(r->kernels, finish)(source, NULL, y + offset, length, r->operation, r->precision, r->temperature,
                                          &scales[row]);
        }
    }
}

/* Long rows, phase 2: combine a row's partials in block order. */
static void DRIVER_FN(combine_row)(const csm_reduction *r, ELEMENT *y, const csm_partial *partials,
                                   csm_row_state *states, csm_row_scale *scales, int64_t row)
{
    states[row] =
        csm_row_scale_from_partials(partials + row * r->blocks, r->blocks, r->operation, r->temperature, &scales[row]);
    if (r->operation == CSM_LOGSUMEXP)
        y[row] = (ELEMENT)csm_logsumexp_from_state(states[row], &scales[row]);
}

/* On one thread, long rows run in batches of rows whose outputs fill about
 * LONG_ROW_BATCH_BYTES: a batch's phase 3 then rescales blocks its phase 1
 * left in L2 instead of reading them back from memory.  A team with at least
 * two such rows per thread shares whole rows, each running its three phases
 * on one thread in the same way; otherwise it shares every row's blocks in one
 * batch (every batch costs two barriers, and a barrier waits for the slowest
 * thread: on a shared machine, one the OS has parked).  Both only order the
 * work, so the bits stay the same for any thread count. */
typedef struct {
    int64_t first_row, rows;
    csm_work partials, rows_work, outputs;
} DRIVER_FN(long_row_batch);

static int DRIVER_FN(long_rows)(const csm_reduction *r, const ELEMENT *x, ELEMENT *y, int threads)
{
    const int64_t row_bytes = r->n * (int64_t)sizeof(ELEMENT);
    const int whole_rows = threads > 1 && r->outer >= 2 * (int64_t)threads && row_bytes <= LONG_ROW_BATCH_BYTES;
    int64_t batch_rows = threads > 1 ? r->outer : LONG_ROW_BATCH_BYTES / row_bytes;
    if (batch_rows < 1)
        batch_rows = 1;
    const int64_t batch_count = (r->outer + batch_rows - 1) / batch_rows; /* a team's one batch: unused by whole rows */
    csm_partial *partials = (csm_partial *)malloc((size_t)(r->outer * r->blocks) * sizeof(csm_partial));
    csm_row_scale *scales = (csm_row_scale *)malloc((size_t)r->outer * sizeof(csm_row_scale));
    csm_row_state *states = (csm_row_state *)malloc((size_t)r->outer * sizeof(csm_row_state));
    DRIVER_FN(long_row_batch) *batches =
        (DRIVER_FN(long_row_batch) *)malloc((size_t)batch_count * sizeof(DRIVER_FN(long_row_batch)));
    if (!partials || !scales || !states || !batches) {
        free(partials);
        free(scales);
        free(states);
        free(batches);
        return CSM_ERROR_NO_MEMORY;
    }
    for (int64_t b = 0; b < batch_count; b++) {
        DRIVER_FN(long_row_batch) *batch = &batches[b];
        batch->first_row = b * batch_rows;
        batch->rows = r->outer - batch->first_row < batch_rows ? r->outer - batch->first_row : batch_rows;
        batch->partials = csm_work_for(batch->rows * r->blocks, threads, 1);
        batch->rows_work = csm_work_for(batch->rows, threads, 1);
        batch->outputs = csm_work_for(batch->rows * r->blocks, threads, 1);
    }
    csm_work row_work = csm_work_for(r->outer, threads, 1);
    CSM_PARALLEL(threads, {
        if (whole_rows) {
            /* a batch of one row per take, on the thread that took it */
            int64_t first, last;
            while (csm_work_take(&row_work, &first, &last))
                for (int64_t row = first; row < last; row++) {
                    const int64_t item = row * r->blocks;
                    DRIVER_FN(block_partials)(r, x, y, partials, item, item + r->blocks);
                    DRIVER_FN(combine_row)(r, y, partials, states, scales, row);
                    if (r->operation != CSM_LOGSUMEXP)
                        DRIVER_FN(block_outputs)(r, x, y, partials, states, scales, item, item + r->blocks);
                }
        } else {
            for (int64_t b = 0; b < batch_count; b++) {
                DRIVER_FN(long_row_batch) *batch = &batches[b];
                const int64_t first_item = batch->first_row * r->blocks;
                int64_t begin, end;
                while (csm_work_take(&batch->partials, &begin, &end))
                    DRIVER_FN(block_partials)(r, x, y, partials, first_item + begin, first_item + end);
                CSM_BARRIER;
                while (csm_work_take(&batch->rows_work, &begin, &end))
                    for (int64_t row = batch->first_row + begin; row < batch->first_row + end; row++)
                        DRIVER_FN(combine_row)(r, y, partials, states, scales, row);
                CSM_BARRIER;
                if (r->operation != CSM_LOGSUMEXP)
                    while (csm_work_take(&batch->outputs, &begin, &end))
                        DRIVER_FN(block_outputs)(r, x, y, partials, states, scales, first_item + begin,
                                                 first_item + end);
            }
        }
    });
    free(partials);
    free(scales);
    free(states);
    free(batches);
    return CSM_OK;
}

int DRIVER_FN(csm_reduce_options)(csm_operation operation, csm_precision precision, const ELEMENT *x, ELEMENT *y,
                                  int64_t outer, int64_t n, int64_t inner, const csm_options *options)
{
    if (outer < 0 || n < 0 || inner < 0 ||
        (operation != CSM_SOFTMAX && operation != CSM_LOG_SOFTMAX && operation != CSM_LOGSUMEXP) ||
        (precision != CSM_EXACT && precision != CSM_FAST) || !options || !(options->temperature > 0.0) ||
        options->temperature == INFINITY || (operation == CSM_LOGSUMEXP && options->temperature != 1.0))
        return CSM_ERROR_BAD_ARGUMENT;
    if (outer == 0 || inner == 0)
        return CSM_OK;
    if (n == 0) {
        if (operation == CSM_LOGSUMEXP)
            DRIVER_FN(fill)(y, outer * inner, (ELEMENT)-INFINITY);
        return CSM_OK;
    }
    const int max_threads = options->max_threads;
    csm_temperature temperature;
    csm_reduction r = {csm_current_kernels(),
                       operation,
                       precision,
                       outer,
                       n,
                       inner,
                       0,
                       options->where,
                       csm_temperature_init(&temperature, options->temperature)};
    const int64_t work = outer * n * inner;
    if (inner > 1) {
        const int64_t tile = KERNEL_FN(r.kernels, column_tile);
        const int64_t items = outer * ((inner + tile - 1) / tile);
        const int threads = csm_threads_for(work, items, max_threads);
        csm_work tiles = csm_work_for(items, threads, 1);
        CSM_PARALLEL(threads, {
            int64_t begin, end;
            while (csm_work_take(&tiles, &begin, &end))
                DRIVER_FN(column_tiles)(&r, x, y, begin, end);
        });
        return CSM_OK;
    }
    if (n * (int64_t)sizeof(ELEMENT) <= SHORT_ROW_BYTES) {
        const int threads = csm_threads_for(work, outer, max_threads);
        const int tiled = KERNEL_FN(r.kernels, rows) && n <= r.kernels->short_row_limit;
        csm_work rows = csm_work_for(outer, threads, tiled ? SHORT_ROW_GRANULE : 1);
        CSM_PARALLEL(threads, {
            int64_t begin, end;
            while (csm_work_take(&rows, &begin, &end))
                DRIVER_FN(short_rows)(&r, x, y, begin, end);
        });
        return CSM_OK;
    }
    const int64_t block = BLOCK_BYTES / (int64_t)sizeof(ELEMENT);
    r.blocks = (n + block - 1) / block;
    return DRIVER_FN(long_rows)(&r, x, y, csm_threads_for(work, outer * r.blocks, max_threads));
}

int DRIVER_FN(csm_reduce)(csm_operation operation, csm_precision precision, const ELEMENT *x, ELEMENT *y, int64_t outer,
                          int64_t n, int64_t inner)
{
    const csm_options options = CSM_DEFAULT_OPTIONS;
    return DRIVER_FN(csm_reduce_options)(operation, precision, x, y, outer, n, inner, &options);
}

#undef DRIVER_FN
#undef DRIVER_FN2
#undef DRIVER_FN_
#undef KERNEL_FN
#undef KERNEL_FN2
#undef KERNEL_FN_
