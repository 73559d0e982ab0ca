/* The output block cache (output_buffers.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <pthread.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "output_buffers.h"

/* User pointers are this aligned; the header sits in the 64 bytes before one. */
#define ALIGNMENT ((size_t)64)
#define HEADER_BYTES ((size_t)64)
/* Blocks this large start on a 2 MiB boundary, so transparent huge pages can
 * back them from the first byte (as NumPy's own allocator arranges). */
#define HUGE_BLOCK_BYTES ((size_t)4 << 20)
#define HUGE_ALIGNMENT ((size_t)2 << 20)
#define CACHE_SLOTS 4

typedef struct {
    void *base; /* what malloc returned */
    size_t size;
} block_header;

static block_header *header_of(void *user) { return (block_header *)((char *)user - HEADER_BYTES); }

/* Guarded by the lock: the cached blocks, oldest first, and their bytes. */
static void *cached[CACHE_SLOTS];
static int cached_count = 0;
static size_t cached_bytes = 0;
static size_t cache_limit = CSM_BUFFER_DEFAULT_LIMIT;

#if defined(_WIN32)
static SRWLOCK cache_lock = SRWLOCK_INIT;
static void lock(void) { AcquireSRWLockExclusive(&cache_lock); }
static void unlock(void) { ReleaseSRWLockExclusive(&cache_lock); }
#else
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void lock(void) { pthread_mutex_lock(&cache_lock); }
static void unlock(void) { pthread_mutex_unlock(&cache_lock); }
#endif

static void *new_block(size_t size)
{
    size_t alignment = size >= HUGE_BLOCK_BYTES ? HUGE_ALIGNMENT : ALIGNMENT;
    if (size > SIZE_MAX - HEADER_BYTES - alignment)
        return NULL;
    char *base = malloc(size + HEADER_BYTES + alignment);
    if (!base)
        return NULL;
    /* The first aligned address with room for the header below it. */
    char *user = base + ((-(uintptr_t)(base + HEADER_BYTES)) & (alignment - 1)) + HEADER_BYTES;
    header_of(user)->base = base;
    header_of(user)->size = size;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (size >= HUGE_BLOCK_BYTES)
        (void)madvise(user, size, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return user;
}

static void release_blocks(void **blocks, int count)
{
    for (int i = 0; i < count; i++)
        free(header_of(blocks[i])->base);
}

/* Moves the oldest cached blocks into `evicted` until `incoming` more bytes in
 * `slots` more blocks fit under the cap; returns how many moved.  Called under
 * the lock. */
static int evict_oldest(size_t incoming, int slots, void **evicted)
{
    int count = 0;
    while (count < cached_count && (cached_count - count + slots > CACHE_SLOTS || cached_bytes > cache_limit ||
                                    incoming > cache_limit - cached_bytes)) {
        evicted[count] = cached[count];
        cached_bytes -= header_of(cached[count])->size;
        count++;
    }
    cached_count -= count;
    memmove(cached, cached + count, (size_t)cached_count * sizeof cached[0]);
    return count;
}

static void *take_cached(size_t size)
{
    void *user = NULL;
    lock();
    for (int i = cached_count - 1; i >= 0; i--) {
        if (header_of(cached[i])->size == size) {
            user = cached[i];
            cached_count--;
            memmove(cached + i, cached + i + 1, (size_t)(cached_count - i) * sizeof cached[0]);
            cached_bytes -= size;
            break;
        }
    }
    unlock();
    return user;
}

void *csm_buffer_malloc(void *ctx, size_t size)
{
    (void)ctx;
    void *user = take_cached(size);
    return user ? user : new_block(size);
}

void *csm_buffer_calloc(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize && nelem > SIZE_MAX / elsize)
        return NULL;
    void *user = csm_buffer_malloc(ctx, nelem * elsize);
    if (user)
        memset(user, 0, nelem * elsize);
    return user;
}

void *csm_buffer_realloc(void *ctx, void *ptr, size_t new_size)
{
    if (!ptr)
        return csm_buffer_malloc(ctx, new_size);
    void *user = csm_buffer_malloc(ctx, new_size);
    if (!user)
        return NULL; /* `ptr` stays valid, as with realloc */
    size_t old_size = header_of(ptr)->size;
    memcpy(user, ptr, old_size < new_size ? old_size : new_size);
    csm_buffer_free(ctx, ptr, old_size);
    return user;
}

void csm_buffer_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    (void)size; /* the header's size is the one malloc saw */
    if (!ptr)
        return;
    void *released[CACHE_SLOTS];
    int count = 0;
    size_t bytes = header_of(ptr)->size;
    lock();
    /* Blocks below the minimum only come from a shrinking realloc: not worth a slot. */
    if (bytes >= CSM_BUFFER_MIN_BYTES && bytes <= cache_limit) {
        count = evict_oldest(bytes, 1, released);
        cached[cached_count++] = ptr;
        cached_bytes += bytes;
    } else {
        released[count++] = ptr;
    }
    unlock();
    release_blocks(released, count); /* outside the lock: munmap can take a while */
}

void csm_buffer_cache_set_limit(size_t bytes)
{
    void *released[CACHE_SLOTS];
    lock();
    cache_limit = bytes;
    int count = evict_oldest(0, 0, released);
    unlock();
    release_blocks(released, count);
}

size_t csm_buffer_cache_limit(void)
{
    lock();
    size_t bytes = cache_limit;
    unlock();
    return bytes;
}

void csm_buffer_cache_release(void)
{
    void *released[CACHE_SLOTS];
    lock();
    int count = cached_count;
    memcpy(released, cached, (size_t)count * sizeof cached[0]);
    cached_count = 0;
    cached_bytes = 0;
    unlock();
    release_blocks(released, count);
}

#if !defined(_WIN32)
/* A child forked while another thread held the lock would wait on it forever. */
static void before_fork(void) { lock(); }
static void after_fork(void) { unlock(); }
#endif

/* The whole string as a count of MiB that fits in a size_t of bytes, or -1. */
static int parse_mib(const char *text, size_t *bytes)
{
    if (*text < '0' || *text > '9') /* strtoull would accept spaces and a sign */
        return -1;
    char *end;
    errno = 0;
    unsigned long long mib = strtoull(text, &end, 10);
    if (*end != '\0' || errno == ERANGE || mib > (SIZE_MAX >> 20))
        return -1;
    *bytes = (size_t)mib << 20;
    return 0;
}

int csm_buffer_cache_init(void)
{
    static int initialised = 0;
    if (initialised)
        return CSM_BUFFER_INIT_OK;
    initialised = 1;
#if !defined(_WIN32)
    pthread_atfork(before_fork, after_fork, after_fork);
#endif
    const char *text = getenv("CSOFTMAX_BUFFER_CACHE_MB");
    size_t bytes = CSM_BUFFER_DEFAULT_LIMIT;
    int status = CSM_BUFFER_INIT_OK;
    if (text && *text && parse_mib(text, &bytes) != 0) {
        bytes = CSM_BUFFER_DEFAULT_LIMIT;
        status = CSM_BUFFER_INIT_BAD_VALUE;
    }
    csm_buffer_cache_set_limit(bytes);
    return status;
}
