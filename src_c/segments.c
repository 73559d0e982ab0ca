/* Segment (ragged) softmax / log_softmax / logsumexp: every CSR segment of
 * rows is one (1, length, inner) reduction of the driver, so its bits are
 * those of a standalone call.  Three kinds of work:
 *   - short rows (inner == 1, length <= the kernels' short-row limit): the
 *     driver runs these through the row-tile kernel, which costs a whole tile
 *     for one row; segments of equal length are gathered into a buffer and
 *     reduced as one (count, length) call instead.  That kernel computes each
 *     row in its own lane (kernel_table.h, simd_template.h), so a row's bits
 *     do not depend on its neighbours;
 *   - a segment holding a thread's share of the work runs alone on every
 *     thread (the driver's results do not depend on max_threads);
 *   - the others run one per call on one thread (max_threads = 1), in chunks
 *     of consecutive segments of about equal element count. */
#include <stdlib.h>
#include <string.h>

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

/* Chunks handed out per thread (as csm_work_for): enough to even out
 * segments of unequal cost and threads parked by the OS. */
#define CHUNKS_PER_THREAD 8
/* Short segments gathered per driver call (a few row tiles). */
#define BATCH_ROWS 128

typedef int (*reduce_fn)(csm_operation operation, csm_precision precision, const void *x, void *y, int64_t outer,
                         int64_t n, int64_t inner, const csm_options *options);

static int reduce_f32(csm_operation operation, csm_precision precision, const void *x, void *y, int64_t outer,
                      int64_t n, int64_t inner, const csm_options *options)
{
    return csm_reduce_options_f32(operation, precision, (const float *)x, (float *)y, outer, n, inner, options);
}

static int reduce_f64(csm_operation operation, csm_precision precision, const void *x, void *y, int64_t outer,
                      int64_t n, int64_t inner, const csm_options *options)
{
    return csm_reduce_options_f64(operation, precision, (const double *)x, (double *)y, outer, n, inner, options);
}

typedef struct {
    reduce_fn reduce;
    csm_operation operation;
    csm_precision precision;
    const char *x;
    char *y;
    const int64_t *indptr;
    int64_t segments, inner, element_size;
    int64_t short_limit; /* lengths 1..short_limit are gathered (0: none) */
    int64_t big;         /* elements from which a segment runs alone on every thread */
} segment_problem;

typedef struct {
    int64_t first, count, length; /* order[first .. first + count) all have this length */
} segment_batch;

static int64_t segment_length(const segment_problem *p, int64_t s) { return p->indptr[s + 1] - p->indptr[s]; }

static int is_short(const segment_problem *p, int64_t s)
{
    const int64_t length = segment_length(p, s);
    return p->inner == 1 && length >= 1 && length <= p->short_limit;
}

/* Neither short nor big: run on its own on one thread. */
static int is_plain(const segment_problem *p, int64_t s)
{
    return !is_short(p, s) && segment_length(p, s) * p->inner < p->big;
}

/* Segment s with at most max_threads threads. */
static int segment_run(const segment_problem *p, int64_t s, int max_threads)
{
    const csm_options options = {NULL, 1.0, max_threads};
    const int64_t first = p->indptr[s];
    const int64_t y_row = p->operation == CSM_LOGSUMEXP ? s : first;
    return p->reduce(p->operation, p->precision, p->x + first * p->inner * p->element_size,
                     p->y + y_row * p->inner * p->element_size, 1, segment_length(p, s), p->inner, &options);
}

/* A batch of short segments: gathered into buffer rows, reduced in place as
 * one (count, length) call on this thread, scattered back. */
static int batch_run(const segment_problem *p, const int64_t *order, const segment_batch *batch, char *buffer)
{
    const csm_options options = {NULL, 1.0, 1};
    const int64_t row_bytes = batch->length * p->element_size;
    const int64_t *segment = order + batch->first;
    for (int64_t k = 0; k < batch->count; k++)
        memcpy(buffer + k * row_bytes, p->x + p->indptr[segment[k]] * p->element_size, (size_t)row_bytes);
    const int logsumexp = p->operation == CSM_LOGSUMEXP;
    char *result = logsumexp ? buffer + batch->count * row_bytes : buffer;
    const int status = p->reduce(p->operation, p->precision, buffer, result, batch->count, batch->length, 1, &options);
    if (status != CSM_OK)
        return status;
    for (int64_t k = 0; k < batch->count; k++) {
        if (logsumexp)
            memcpy(p->y + segment[k] * p->element_size, result + k * p->element_size, (size_t)p->element_size);
        else
            memcpy(p->y + p->indptr[segment[k]] * p->element_size, buffer + k * row_bytes, (size_t)row_bytes);
    }
    return CSM_OK;
}

/* Short segments ordered by (length, index) into order[]; batches of up to
 * BATCH_ROWS of one length.  Returns the batch count. */
static int64_t plan_batches(const segment_problem *p, int64_t *order, segment_batch *batches, int64_t *by_length)
{
    for (int64_t length = 0; length <= p->short_limit + 1; length++)
        by_length[length] = 0;
    for (int64_t s = 0; s < p->segments; s++)
        if (is_short(p, s))
            by_length[segment_length(p, s) + 1]++;
    for (int64_t length = 1; length <= p->short_limit + 1; length++)
        by_length[length] += by_length[length - 1]; /* by_length[L]: first slot of length L */
    for (int64_t s = 0; s < p->segments; s++)
        if (is_short(p, s))
            order[by_length[segment_length(p, s)]++] = s;
    /* now by_length[L] is one past the last slot of length L */
    int64_t count = 0, first = 0;
    for (int64_t length = 1; length <= p->short_limit; length++) {
        for (; first < by_length[length]; first += BATCH_ROWS) {
            const int64_t left = by_length[length] - first;
            segment_batch batch = {first, left < BATCH_ROWS ? left : BATCH_ROWS, length};
            batches[count++] = batch;
        }
        first = by_length[length];
    }
    return count;
}

/* Chunks of consecutive plain segments of about `target` elements each (an
 * empty segment counts for one).  Returns the chunk count. */
static int64_t plan_chunks(const segment_problem *p, int64_t target, int64_t *chunk_start)
{
    int64_t chunks = 0, filled = 0;
    chunk_start[0] = 0;
    for (int64_t s = 0; s < p->segments; s++) {
        if (is_plain(p, s))
            filled += segment_length(p, s) * p->inner + 1;
        if (filled >= target || s == p->segments - 1) {
            chunk_start[++chunks] = s + 1;
            filled = 0;
        }
    }
    return chunks;
}

static int segment_reduce(segment_problem *p)
{
    if (p->segments < 0 || p->inner < 0 ||
        !(p->operation == CSM_SOFTMAX || p->operation == CSM_LOG_SOFTMAX || p->operation == CSM_LOGSUMEXP))
        return CSM_ERROR_BAD_ARGUMENT;
    if (p->indptr[0] != 0)
        return CSM_ERROR_BAD_ARGUMENT;
    for (int64_t s = 0; s < p->segments; s++)
        if (p->indptr[s + 1] < p->indptr[s])
            return CSM_ERROR_BAD_ARGUMENT;
    if (p->segments == 0)
        return CSM_OK;
    const int64_t total = p->indptr[p->segments] * p->inner;
    const int threads = csm_threads_for(total, p->segments, 0);
    const int64_t share = total / threads;
    p->big = threads == 1                              ? INT64_MAX
             : share > 2 * CSM_MIN_ELEMENTS_PER_THREAD ? share
                                                       : 2 * CSM_MIN_ELEMENTS_PER_THREAD;

    int64_t plain_total = 0;
    for (int64_t s = 0; s < p->segments; s++) {
        if (!is_short(p, s) && segment_length(p, s) * p->inner >= p->big) {
            const int status = segment_run(p, s, 0);
            if (status != CSM_OK)
                return status;
        } else if (is_plain(p, s)) {
            plain_total += segment_length(p, s) * p->inner;
        }
    }

    const size_t segments = (size_t)p->segments;
    int64_t *order = (int64_t *)malloc(segments * sizeof(int64_t));
    int64_t *chunk_start = (int64_t *)malloc((segments + 1) * sizeof(int64_t));
    int64_t *by_length = (int64_t *)malloc((size_t)(p->short_limit + 2) * sizeof(int64_t));
    segment_batch *batches = (segment_batch *)malloc((segments + (size_t)p->short_limit) * sizeof(segment_batch));
    /* one status per work item, each written by one thread only */
    int *status = (int *)calloc(2 * segments + (size_t)p->short_limit + 1, sizeof(int));
    const int64_t buffer_bytes = BATCH_ROWS * (p->short_limit + 1) * p->element_size;
    char *buffers = (char *)malloc((size_t)(threads * buffer_bytes));
    int result = CSM_ERROR_NO_MEMORY;
    if (order && chunk_start && by_length && batches && status && buffers) {
        const int64_t batch_count = plan_batches(p, order, batches, by_length);
        const int64_t chunks = plan_chunks(p, plain_total / ((int64_t)threads * CHUNKS_PER_THREAD) + 1, chunk_start);
        int *batch_status = status + chunks;
        csm_work slots = {0, threads, 1}; /* each thread takes one buffer */
        csm_work batch_work = csm_work_for(batch_count, threads, 1);
        csm_work chunk_work = csm_work_for(chunks, threads, 1);
        CSM_PARALLEL(threads, {
            int64_t slot = 0, unused, begin, end;
            csm_work_take(&slots, &slot, &unused); /* never fails: one take per thread */
            while (csm_work_take(&batch_work, &begin, &end))
                for (int64_t b = begin; b < end; b++)
                    batch_status[b] = batch_run(p, order, &batches[b], buffers + slot * buffer_bytes);
            while (csm_work_take(&chunk_work, &begin, &end))
                for (int64_t chunk = begin; chunk < end; chunk++)
                    for (int64_t s = chunk_start[chunk]; s < chunk_start[chunk + 1]; s++)
                        if (is_plain(p, s) && status[chunk] == CSM_OK)
                            status[chunk] = segment_run(p, s, 1);
        });
        result = CSM_OK;
        for (int64_t item = 0; item < chunks + batch_count && result == CSM_OK; item++)
            result = status[item];
    }
    free(order);
    free(chunk_start);
    free(by_length);
    free(batches);
    free(status);
    free(buffers);
    return result;
}

int csm_segment_reduce_f32(csm_operation operation, csm_precision precision, const float *x, float *y,
                           const int64_t *indptr, int64_t segments, int64_t inner)
{
    const csm_kernel_table *kernels = csm_current_kernels();
    segment_problem p = {
        reduce_f32, operation, precision, (const char *)x,        (char *)y,
        indptr,     segments,  inner,     (int64_t)sizeof(float), kernels->rows_f32 ? kernels->short_row_limit : 0,
        0};
    return segment_reduce(&p);
}

int csm_segment_reduce_f64(csm_operation operation, csm_precision precision, const double *x, double *y,
                           const int64_t *indptr, int64_t segments, int64_t inner)
{
    const csm_kernel_table *kernels = csm_current_kernels();
    segment_problem p = {
        reduce_f64, operation, precision, (const char *)x,         (char *)y,
        indptr,     segments,  inner,     (int64_t)sizeof(double), kernels->rows_f64 ? kernels->short_row_limit : 0,
        0};
    return segment_reduce(&p);
}
