/* The thread-count API, the per-call thread policy and fork safety
 * (parallel.h). */
#ifdef _OPENMP
#include <omp.h>
#endif
#if !defined(_WIN32)
#include <pthread.h>
#endif

#include "csoftmax.h"
#include "dispatch.h"
#include "parallel.h"

static int thread_override = 0;
volatile int csm_openmp_used = 0;
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

int csm_threads_for(int64_t work, int64_t items, int max_threads)
{
    if (forked_after_openmp)
        return 1;
    int64_t threads = csm_get_num_threads();
    if (max_threads > 0 && threads > max_threads)
        threads = max_threads;
    if (threads > work / CSM_MIN_ELEMENTS_PER_THREAD)
        threads = work / CSM_MIN_ELEMENTS_PER_THREAD;
    if (threads > items)
        threads = items;
    return threads < 1 ? 1 : (int)threads;
}

#if !defined(_WIN32)
static void after_fork_in_child(void)
{
    if (csm_openmp_used)
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
