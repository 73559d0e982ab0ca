/* Shapes -> kernels, the threading policy and its determinism guarantee, the
 * thread-count API and fork safety.  The per-type driver is driver_body.h. */
#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(_WIN32)
#include <pthread.h>
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

#include "csoftmax.h"
#include "dispatch.h"

/* Rows up to SHORT_ROW_BYTES run max | exp-store-sum | scale while the row
 * stays in L2; longer rows are cut into BLOCK_BYTES blocks (L1-sized, so a
 * block's max and exp-sum passes share one load from memory). */
#define SHORT_ROW_BYTES (128 * 1024)
#define BLOCK_BYTES (32 * 1024)
/* Rows per work chunk are multiples of this (the widest short-row tile). */
#define SHORT_ROW_GRANULE 32
/* Below this many elements per thread, fork/join costs more than it saves. */
#define MIN_ELEMENTS_PER_THREAD 32768

typedef struct {
    const csm_kernel_table *kernels;
    int operation, precision;
    int64_t outer, n, inner;
    int64_t blocks; /* long rows: blocks per row */
} csm_reduction;

static int thread_override = 0;
static volatile int openmp_used = 0;
/* libgomp's pool does not survive fork(): a child of a process that ran a
 * parallel region must stay serial. */
static volatile int forked_after_openmp = 0;

int csm_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int csm_get_num_threads(void)
{
    if (thread_override > 0)
        return thread_override;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void csm_set_num_threads(int n) { thread_override = n > 0 ? n : 0; }

static int csm_threads_for(int64_t work, int64_t items)
{
    if (forked_after_openmp)
        return 1;
    int64_t threads = csm_get_num_threads();
    if (threads > work / MIN_ELEMENTS_PER_THREAD)
        threads = work / MIN_ELEMENTS_PER_THREAD;
    if (threads > items)
        threads = items;
    return threads < 1 ? 1 : (int)threads;
}

/* Work is handed out in chunks from a shared counter rather than split into
 * one fixed share per thread: when the OS parks one of our threads (another
 * process holding its core) the others take its chunks instead of waiting
 * for it at the join.  Which thread computes a chunk never changes its bits.
 * Chunks are whole multiples of `granule` items (a short-row tile). */
typedef struct {
    int64_t next, total, chunk;
} csm_work;

static csm_work csm_work_for(int64_t total, int threads, int64_t granule)
{
    int64_t chunk = threads > 1 ? total / ((int64_t)threads * 8) : total;
    chunk = (chunk + granule - 1) / granule * granule;
    csm_work work = {0, total, chunk < 1 ? 1 : chunk};
    return work;
}

static int csm_work_take(csm_work *work, int64_t *begin, int64_t *end)
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
#define CSM_PARALLEL(thread_count, ...)                                                                            \
    do {                                                                                                           \
        const int csm_team_size = (thread_count);                                                                  \
        if (csm_team_size > 1) {                                                                                   \
            openmp_used = 1;                                                                                       \
            _Pragma("omp parallel num_threads(csm_team_size)") __VA_ARGS__                                         \
        } else {                                                                                                   \
            __VA_ARGS__                                                                                            \
        }                                                                                                          \
    } while (0)
#define CSM_BARRIER                                                                                                \
    if (csm_team_size > 1) {                                                                                       \
        _Pragma("omp barrier")                                                                                     \
    }
#else
#define CSM_PARALLEL(thread_count, ...)                                                                            \
    do {                                                                                                           \
        __VA_ARGS__                                                                                                \
    } while (0)
#define CSM_BARRIER
#endif

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

#if !defined(_WIN32)
static void after_fork_in_child(void)
{
    if (openmp_used)
        forked_after_openmp = 1;
}
#endif

int csm_init(void)
{
    static int fork_handler_installed = 0;
#if !defined(_WIN32)
    if (!fork_handler_installed)
        pthread_atfork(NULL, NULL, after_fork_in_child);
#endif
    fork_handler_installed = 1;
    return csm_dispatch_init();
}
