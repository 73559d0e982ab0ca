/* Segment (ragged) softmax / log_softmax / logsumexp: every CSR segment of
 * rows is one (1, length, inner) reduction of the driver.  Small segments are
 * spread over threads in chunks of about equal element count, each computed
 * on one thread (max_threads = 1); a segment big enough to keep every thread
 * busy on its own runs alone with every thread.  The driver's results do not
 * depend on max_threads, so each segment's bits are those of a standalone
 * call, whichever way it ran. */
#include <stdlib.h>

#include "csoftmax.h"
#include "driver.h"
#include "parallel.h"

/* Chunks handed to threads per thread (as csm_work_for): enough to even out
 * segments of unequal cost and threads parked by the OS. */
#define CHUNKS_PER_THREAD 8

typedef int (*segment_reduce_fn)(csm_operation operation, csm_precision precision, const void *x, void *y,
                                 int64_t n, int64_t inner, const csm_options *options);

static int reduce_f32(csm_operation operation, csm_precision precision, const void *x, void *y, int64_t n,
                      int64_t inner, const csm_options *options)
{
    return csm_reduce_options_f32(operation, precision, (const float *)x, (float *)y, 1, n, inner, options);
}

static int reduce_f64(csm_operation operation, csm_precision precision, const void *x, void *y, int64_t n,
                      int64_t inner, const csm_options *options)
{
    return csm_reduce_options_f64(operation, precision, (const double *)x, (double *)y, 1, n, inner, options);
}

typedef struct {
    segment_reduce_fn reduce;
    csm_operation operation;
    csm_precision precision;
    const char *x;
    char *y;
    const int64_t *indptr;
    int64_t inner;
    int64_t element_size;
} segment_problem;

/* Segment s with at most max_threads threads. */
static int segment_run(const segment_problem *p, int64_t s, int max_threads)
{
    const csm_options options = {NULL, 1.0, max_threads};
    const int64_t first = p->indptr[s], length = p->indptr[s + 1] - first;
    const int64_t y_row = p->operation == CSM_LOGSUMEXP ? s : first;
    return p->reduce(p->operation, p->precision, p->x + first * p->inner * p->element_size,
                     p->y + y_row * p->inner * p->element_size, length, p->inner, &options);
}

static int segment_reduce(const segment_problem *p, int64_t segments)
{
    if (segments < 0 || p->inner < 0 || !(p->operation == CSM_SOFTMAX || p->operation == CSM_LOG_SOFTMAX ||
                                          p->operation == CSM_LOGSUMEXP))
        return CSM_ERROR_BAD_ARGUMENT;
    if (p->indptr[0] != 0)
        return CSM_ERROR_BAD_ARGUMENT;
    for (int64_t s = 0; s < segments; s++)
        if (p->indptr[s + 1] < p->indptr[s])
            return CSM_ERROR_BAD_ARGUMENT;
    const int64_t total = p->indptr[segments] * p->inner;
    const int threads = csm_threads_for(total, segments, 0);
    if (threads == 1) {
        for (int64_t s = 0; s < segments; s++) {
            const int status = segment_run(p, s, 1);
            if (status != CSM_OK)
                return status;
        }
        return CSM_OK;
    }

    /* A segment holding a thread's share of the work, and enough elements to
     * be worth threads of its own, runs alone on all threads. */
    const int64_t share = total / threads;
    const int64_t big = share > 2 * CSM_MIN_ELEMENTS_PER_THREAD ? share : 2 * CSM_MIN_ELEMENTS_PER_THREAD;
    int64_t small_total = 0;
    for (int64_t s = 0; s < segments; s++) {
        const int64_t elements = (p->indptr[s + 1] - p->indptr[s]) * p->inner;
        if (elements >= big) {
            const int status = segment_run(p, s, 0);
            if (status != CSM_OK)
                return status;
        } else {
            small_total += elements;
        }
    }

    /* Chunks of consecutive segments holding about small_total / (threads * 8)
     * elements each (at least one segment; empty ones cost a little too). */
    int64_t *chunk_start = (int64_t *)malloc((size_t)(segments + 1) * sizeof(int64_t));
    int *chunk_status = (int *)calloc((size_t)segments + 1, sizeof(int)); /* one writer each: no race */
    if (!chunk_start || !chunk_status) {
        free(chunk_start);
        free(chunk_status);
        return CSM_ERROR_NO_MEMORY;
    }
    const int64_t target = small_total / ((int64_t)threads * CHUNKS_PER_THREAD) + 1;
    int64_t chunks = 0, filled = 0;
    chunk_start[0] = 0;
    for (int64_t s = 0; s < segments; s++) {
        const int64_t elements = (p->indptr[s + 1] - p->indptr[s]) * p->inner;
        filled += (elements < big ? elements : 0) + 1;
        if (filled >= target || s == segments - 1) {
            chunk_start[++chunks] = s + 1;
            filled = 0;
        }
    }
    const int team = csm_threads_for(small_total + chunks, chunks, threads);
    csm_work work = csm_work_for(chunks, team, 1);
    CSM_PARALLEL(team, {
        int64_t begin, end;
        while (csm_work_take(&work, &begin, &end))
            for (int64_t chunk = begin; chunk < end; chunk++)
                for (int64_t s = chunk_start[chunk]; s < chunk_start[chunk + 1]; s++)
                    if ((p->indptr[s + 1] - p->indptr[s]) * p->inner < big && chunk_status[chunk] == CSM_OK)
                        chunk_status[chunk] = segment_run(p, s, 1);
    });
    int status = CSM_OK;
    for (int64_t chunk = 0; chunk < chunks && status == CSM_OK; chunk++)
        status = chunk_status[chunk];
    free(chunk_start);
    free(chunk_status);
    return status;
}

int csm_segment_reduce_f32(csm_operation operation, csm_precision precision, const float *x, float *y,
                           const int64_t *indptr, int64_t segments, int64_t inner)
{
    const segment_problem p = {reduce_f32, operation, precision, (const char *)x, (char *)y, indptr, inner,
                               (int64_t)sizeof(float)};
    return segment_reduce(&p, segments);
}

int csm_segment_reduce_f64(csm_operation operation, csm_precision precision, const double *x, double *y,
                           const int64_t *indptr, int64_t segments, int64_t inner)
{
    const segment_problem p = {reduce_f64, operation, precision, (const char *)x, (char *)y, indptr, inner,
                               (int64_t)sizeof(double)};
    return segment_reduce(&p, segments);
}
