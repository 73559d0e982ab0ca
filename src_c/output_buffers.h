/* A small cache of large output blocks behind NumPy's PyDataMemAllocator
 * signatures (NEP 49), so that a large result reuses pages that are already
 * mapped instead of faulting in freshly zeroed ones on every call.  Blocks
 * are 64-byte aligned (AVX-512 stores never split a cache line) and carry
 * their own size, so the size NumPy passes to free and realloc is not needed.
 * Thread-safe; nothing here sees a Python object. */
#ifndef CSM_OUTPUT_BUFFERS_H
#define CSM_OUTPUT_BUFFERS_H

#include <stddef.h>

/* Smaller outputs stay on NumPy's allocator: its small-block cache is faster. */
#define CSM_BUFFER_MIN_BYTES ((size_t)1 << 20)
/* The cache's byte cap unless CSOFTMAX_BUFFER_CACHE_MB says otherwise. */
#define CSM_BUFFER_DEFAULT_LIMIT ((size_t)512 << 20)

enum {
    CSM_BUFFER_INIT_OK = 0,
    CSM_BUFFER_INIT_BAD_VALUE = 1 /* CSOFTMAX_BUFFER_CACHE_MB is no whole number of MiB: default used */
};

/* Reads the cap from CSOFTMAX_BUFFER_CACHE_MB (0 disables the cache); call
 * once, before the first allocation.  Returns CSM_BUFFER_INIT_*. */
int csm_buffer_cache_init(void);
/* Caps the bytes held in cached blocks; 0 disables caching.  Cached blocks
 * beyond the new cap are released at once. */
void csm_buffer_cache_set_limit(size_t bytes);
size_t csm_buffer_cache_limit(void);
/* Releases every cached block (blocks in use are not affected). */
void csm_buffer_cache_release(void);

/* The PyDataMemAllocator functions; ctx is unused.  malloc returns NULL on
 * failure, reuses a cached block of exactly `size` bytes when there is one
 * (the most recently freed first), and its contents are then undefined. */
void *csm_buffer_malloc(void *ctx, size_t size);
void *csm_buffer_calloc(void *ctx, size_t nelem, size_t elsize);
void *csm_buffer_realloc(void *ctx, void *ptr, size_t new_size);
void csm_buffer_free(void *ctx, void *ptr, size_t size);

#endif
