/* The per-ISA kernel table: what every kernels/<isa>.c provides, and the
 * small structs that carry partial results between kernels and the driver. */
#ifndef CSM_KERNEL_TABLE_H
#define CSM_KERNEL_TABLE_H

#include <stdint.h>

#include "csoftmax.h"

/* Kernel helpers are force-inlined so each precision/operation variant is
 * specialised at compile time (no run-time flags in inner loops). */
#if defined(_MSC_VER) && !defined(__clang__)
#define CSM_INLINE static __forceinline
#else
#define CSM_INLINE static inline __attribute__((always_inline))
#endif

/* Partial reduction of one row or block, relative to its own maximum:
 * sum(exp(x - max)) == count + rest.  A "masked" partial puts every element
 * equal to max in count and the others in rest, so rest alone is the exact
 * sum of the non-maximal terms that log1p needs near 0.  An "unmasked" one
 * (the softmax store path, fast mode's sums) has count == 0. */
typedef struct {
    double max;     /* may be NaN or dropped NaN: rest is NaN then */
    double count;   /* elements equal to max (masked partials) */
    double rest_hi; /* sum of the other exp(x - max), double-double */
    double rest_lo;
} csm_partial;

/* What the output pass of a row needs, derived from its partials. */
typedef struct {
    double max;        /* M, the row maximum */
    double inverse_hi; /* 1 / sum(exp(x - M)) as a double-double */
    double inverse_lo;
    double log_sum; /* log(sum(exp(x - M))), computed as log1p(rest) */
} csm_row_scale;

/* How a row ends up, decided from its partials (see row_scale.c). */
typedef enum {
    CSM_ROW_FINITE = 0,  /* normal row: use the scale */
    CSM_ROW_NAN = 1,     /* NaN anywhere: everything NaN */
    CSM_ROW_POS_INF = 2, /* +inf present, no NaN: softmax NaN, logsumexp +inf */
    CSM_ROW_NEG_INF = 3  /* only -inf: softmax NaN, logsumexp -inf */
} csm_row_state;

/* 1 / temperature as a double-double (hi + lo), for kernels that compute
 * exp((x - max) / temperature); a NULL csm_temperature * means temperature 1. */
typedef struct {
    double inverse_hi, inverse_lo;
} csm_temperature;

/* Every kernel that reads x also takes `where`: NULL, or a 0/1 byte mask laid
 * out exactly like x.  Excluded elements read as -inf (out of every max and
 * sum) and give 0 (softmax) or -inf (log_softmax) -- except in special rows,
 * whose excluded outputs the driver writes (csm_fill_special_*). */
typedef struct {
    const char *name;
    /* The maximum of the included x, -inf when none; where x holds a NaN it
     * may or may not be NaN (the NaN term makes the partial NaN either way).
     * An entry of its own so that a driver can run a row's max pass ahead of
     * other work and hide the wait for the maximum. */
    float (*max_f32)(const float *x, const uint8_t *where, int64_t n);
    double (*max_f64)(const double *x, const uint8_t *where, int64_t n);
    /* One contiguous row or block, given row_max = max_* of the same x, where
     * and n (the same table's; csm_partial_of_* below pairs the two): fills
     * *partial.  With y != NULL (which may be x) it also stores
     * exp((x - p.max) / T) into y and fills an unmasked partial, whose max
     * may be a reference point within ln2/2 of the true maximum rather than
     * the maximum (float32: terms then up to sqrt(2)); when the maximum is
     * -inf it stores zeros and fills the masked partial.  With y == NULL it
     * fills a masked partial -- or, in fast mode where the maximum is finite,
     * an unmasked one: the classical sum of every term, whose log needs no
     * log1p (fast mode's accuracy, DESIGN.md section 1). */
    void (*partial_f32)(const float *x, const uint8_t *where, float *y, int64_t n, float row_max, int precision,
                        const csm_temperature *temperature, csm_partial *partial);
    void (*partial_f64)(const double *x, const uint8_t *where, double *y, int64_t n, double row_max, int precision,
                        const csm_temperature *temperature, csm_partial *partial);
    /* y = x where included, -inf where excluded (y may be x): the row paths
     * read the mask once this way, then run unmasked on y. */
    void (*mask_f32)(const float *x, const uint8_t *where, float *y, int64_t n);
    void (*mask_f64)(const double *x, const uint8_t *where, double *y, int64_t n);
    /* y *= 1 / sum, in place (after partial with y). */
    void (*scale_f32)(float *y, int64_t n, int precision, const csm_row_scale *scale);
    void (*scale_f64)(double *y, int64_t n, int precision, const csm_row_scale *scale);
    /* Output pass from x: softmax y = exp((x - M) / T) / sum, log_softmax y = (x - M) / T - log(sum). */
    void (*finish_f32)(const float *x, const uint8_t *where, float *y, int64_t n, int operation, int precision,
                       const csm_temperature *temperature, const csm_row_scale *scale);
    void (*finish_f64)(const double *x, const uint8_t *where, double *y, int64_t n, int operation, int precision,
                       const csm_temperature *temperature, const csm_row_scale *scale);
    /* A tile of `columns` adjacent columns of an (n, inner) slab, whole operation:
     * x, where and y point at the tile's first column; rows are `inner` elements
     * apart.  For logsumexp y receives `columns` values.  Special columns are
     * complete (NaN where included, 0 / -inf where excluded). */
    void (*columns_f32)(const float *x, const uint8_t *where, float *y, int64_t n, int64_t inner, int64_t columns,
                        int operation, int precision, const csm_temperature *temperature);
    void (*columns_f64)(const double *x, const uint8_t *where, double *y, int64_t n, int64_t inner, int64_t columns,
                        int operation, int precision, const csm_temperature *temperature);
    /* `rows` contiguous rows of n <= short_row_limit elements, whole operation
     * (logsumexp: `rows` values).  NULL where per-row kernels are as good. */
    void (*rows_f32)(const float *x, const uint8_t *where, float *y, int64_t rows, int64_t n, int operation,
                     int precision, const csm_temperature *temperature);
    void (*rows_f64)(const double *x, const uint8_t *where, double *y, int64_t rows, int64_t n, int operation,
                     int precision, const csm_temperature *temperature);
    /* Gradients given the forward output s: operation CSM_SOFTMAX gives
     * s * (g - sum(g * s)), CSM_LOG_SOFTMAX g - exp(s) * sum(g), summed over
     * the included elements (excluded outputs are 0).  inner == 1: `columns`
     * consecutive rows of n; inner > 1: a tile of `columns` <= column_tile
     * columns of an (n, inner) slab, rows `inner` elements apart. */
    void (*backward_f32)(const float *g, const float *s, const uint8_t *where, float *out, int64_t n, int64_t inner,
                         int64_t columns, int operation);
    void (*backward_f64)(const double *g, const double *s, const uint8_t *where, double *out, int64_t n, int64_t inner,
                         int64_t columns, int operation);
    int64_t column_tile_f32; /* widest tile columns_f32 accepts */
    int64_t column_tile_f64;
    int64_t short_row_limit;
} csm_kernel_table;

/* partial_* of x with its maximum from the same table: every caller but the
 * driver's rows in cache, which run the max pass ahead of other work. */
static inline void csm_partial_of_f32(const csm_kernel_table *kernels, const float *x, const uint8_t *where, float *y,
                                      int64_t n, int precision, const csm_temperature *temperature,
                                      csm_partial *partial)
{
    kernels->partial_f32(x, where, y, n, kernels->max_f32(x, where, n), precision, temperature, partial);
}

static inline void csm_partial_of_f64(const csm_kernel_table *kernels, const double *x, const uint8_t *where, double *y,
                                      int64_t n, int precision, const csm_temperature *temperature,
                                      csm_partial *partial)
{
    kernels->partial_f64(x, where, y, n, kernels->max_f64(x, where, n), precision, temperature, partial);
}

/* Combine partials in their given (fixed) order into a row scale: row_scale.c.
 * Shared by the driver and the column kernels so the special-value rules and
 * the exact combine live in one place. */
csm_row_state csm_row_scale_from_partials(const csm_partial *partials, int64_t count, int operation,
                                          const csm_temperature *temperature, csm_row_scale *scale);

/* csm_row_scale_from_partials for the one partial of a float32 row, on a
 * short chain (it sits between a row's passes): 1 / sum or log(sum) in double
 * alone, whose 2^-53 errors are far below a float's ULP. */
csm_row_state csm_row_scale_float32(const csm_partial *partial, int operation, const csm_temperature *temperature,
                                    csm_row_scale *scale);

/* Merge partials[0], partials[stride], ... (count of them), in that order,
 * into one partial relative to their overall maximum: row_scale.c.  The result
 * folds the maxima's count into rest (count 1, rest = sum - 1), so merging it
 * again or deriving a row scale from it adds no rounding.  A special row gives
 * {NaN, 0, NaN, 0}, {+inf, 1, 0, 0} or {-inf, 0, 0, 0}: again a valid partial.
 * Returns the row's state. */
csm_row_state csm_merge_partials(const csm_partial *partials, int64_t count, int64_t stride,
                                 const csm_temperature *temperature, csm_partial *merged);

/* The scale of one softmax block that stored exp((x - block max) / T): the
 * row's 1/sum times exp((block max - M) / T), as a double-double. */
void csm_block_scale(const csm_partial *block, const csm_row_scale *row, const csm_temperature *temperature,
                     csm_row_scale *scale);

/* 1 / temperature as a double-double; NULL for temperature 1 (kernels then
 * run their untempered code). */
const csm_temperature *csm_temperature_init(csm_temperature *storage, double temperature);

/* logsumexp of a row from its state and scale (M + log(sum), or the special value). */
double csm_logsumexp_from_state(csm_row_state state, const csm_row_scale *scale);

/* Per-ISA tables (dispatch.c picks one); the getters return NULL where the
 * ISA is not compiled in (e.g. x86 kernels on aarch64). */
extern const csm_kernel_table csm_kernels_scalar;
const csm_kernel_table *csm_kernels_avx2(void);
const csm_kernel_table *csm_kernels_avx512(void);
const csm_kernel_table *csm_kernels_neon(void);

#endif /* CSM_KERNEL_TABLE_H */
