/* The threading policy shared by every driver: how many threads a call gets,
 * chunked work sharing, the OpenMP region macro and fork safety.  Which thread
 * computes a piece of work never changes its bits. */
#ifndef CSM_PARALLEL_H
#define CSM_PARALLEL_H

#include <stdint.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

/* Below this many elements per thread, fork/join costs more than it saves. */
#define CSM_MIN_ELEMENTS_PER_THREAD 32768

/* Threads for `work` elements in `items` independent pieces, capped by
 * `max_threads` (0: csm_get_num_threads()); 1 in a child forked after a
 * parallel region (libgomp's pool does not survive fork). */
int csm_threads_for(int64_t work, int64_t items, int max_threads);

/* Set once a parallel region ran (the fork handler needs to know). */
extern volatile int csm_openmp_used;

/* Work is handed out in chunks from a shared counter rather than split into
 * one fixed share per thread: when the OS parks one of our threads (another
 * process holding its core) the others take its chunks instead of waiting
 * for it at the join.  Chunks are whole multiples of `granule` items. */
typedef struct {
    int64_t next, total, chunk;
} csm_work;

static inline csm_work csm_work_for(int64_t total, int threads, int64_t granule)
{
    int64_t chunk = threads > 1 ? total / ((int64_t)threads * 8) : total;
    chunk = (chunk + granule - 1) / granule * granule;
    csm_work work = {0, total, chunk < 1 ? 1 : chunk};
    return work;
}

static inline int csm_work_take(csm_work *work, int64_t *begin, int64_t *end)
{
#if defined(_MSC_VER) && !defined(__clang__)
    const int64_t start = _InterlockedExchangeAdd64((volatile __int64 *)&work->next, work->chunk);
#else
    const int64_t start = __atomic_fetch_add(&work->next, work->chunk, __ATOMIC_RELAXED);
#endif
    if (start >= work->total)
        return 0;
    *begin = start;
    *end = work->total - start < work->chunk ? work->total : start + work->chunk;
    return 1;
}

/* Runs the body on a team of thread_count threads, or directly on the
 * calling thread (no OpenMP call at all) when thread_count is 1. */
#ifdef _OPENMP
#define CSM_PARALLEL(thread_count, ...)                                                                                \
    do {                                                                                                               \
        const int csm_team_size = (thread_count);                                                                      \
        if (csm_team_size > 1) {                                                                                       \
            csm_openmp_used = 1;                                                                                       \
            _Pragma("omp parallel num_threads(csm_team_size)") __VA_ARGS__                                             \
        } else {                                                                                                       \
            __VA_ARGS__                                                                                                \
        }                                                                                                              \
    } while (0)
#define CSM_BARRIER                                                                                                    \
    if (csm_team_size > 1) {                                                                                           \
        _Pragma("omp barrier")                                                                                         \
    }
#else
#define CSM_PARALLEL(thread_count, ...)                                                                                \
    do {                                                                                                               \
        __VA_ARGS__                                                                                                    \
    } while (0)
#define CSM_BARRIER
#endif

#endif /* CSM_PARALLEL_H */
