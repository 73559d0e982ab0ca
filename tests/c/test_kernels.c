/* C-level test of every kernel entry point of every ISA usable on this
 * machine (scalar and AVX2 / AVX-512 on x86-64; scalar and NEON on aarch64,
 * natively or under qemu-user), without Python:
 *
 *   partial (masked and storing), scale, finish (softmax, log_softmax),
 *   columns and rows (softmax, log_softmax, logsumexp), both dtypes, both
 *   precisions, against a long double reference (reference.c) and against
 *   the scalar kernel; then csm_reduce_f32/f64 end to end (rows, columns,
 *   long blocked rows, in place, bitwise determinism across thread counts);
 *   then csm_reduce_options (a where mask, a temperature) and csm_backward
 *   against the scalar kernel, which the Python suite checks against mpmath.
 *
 * Rows have 1..70 elements plus a few longer ones, spreads up to +-1000,
 * ties, outputs near 0 and below the normal range, and -inf / NaN / +inf mixed
 * in.  Inputs end at a PROT_NONE page, so a tail that reads or writes past the
 * end of its array crashes the test.
 *
 * Bars (the same as tests/reference.py): exact mode 4 ULP; fast mode 4 ULP
 * plus the classical algorithm's spread term; logsumexp 4 ULP plus 4 ULP of
 * log(sum).  Against the scalar kernel: the same special values, and at most
 * twice the bar apart.
 *
 * Usage: test_kernels [isa ...]   (default: every ISA usable here)
 * Prints a per-ISA table of the worst errors and "N passed, M failed"; the
 * exit status is non-zero on any failure. */
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define HAVE_GUARD_PAGES 1
#endif

#include "csoftmax.h"
#include "dispatch.h"
#include "reference.h"

/* ------------------------------------------------------------------------- */
/* What is checked, and the tally                                            */
/* ------------------------------------------------------------------------- */

typedef enum {
    ENTRY_PARTIAL,           /* masked partial: state, max, count, rest */
    ENTRY_PARTIAL_LOGSUMEXP, /* masked partial -> csm_logsumexp_from_state */
    ENTRY_PARTIAL_STORE,     /* storing partial: y = exp(x - max), rest */
    ENTRY_SCALE,             /* storing partial + scale: softmax */
    ENTRY_FINISH_SOFTMAX,
    ENTRY_FINISH_LOG_SOFTMAX,
    ENTRY_COLUMNS_SOFTMAX,
    ENTRY_COLUMNS_LOG_SOFTMAX,
    ENTRY_COLUMNS_LOGSUMEXP,
    ENTRY_ROWS_SOFTMAX,
    ENTRY_ROWS_LOG_SOFTMAX,
    ENTRY_ROWS_LOGSUMEXP,
    ENTRY_REDUCE_SOFTMAX,
    ENTRY_REDUCE_LOG_SOFTMAX,
    ENTRY_REDUCE_LOGSUMEXP,
    ENTRY_REDUCE_THREADS, /* bitwise equality for 1 and 4 threads */
    ENTRY_MASKED,         /* csm_reduce_options with where / temperature: against the scalar kernel */
    ENTRY_BACKWARD,       /* csm_backward: against the scalar kernel */
    ENTRY_COUNT
} entry_point;

static const char *const entry_names[ENTRY_COUNT] = {
    "partial (masked)", "partial -> logsumexp", "partial (store)",
    "scale (softmax)",  "finish softmax",       "finish log_softmax",
    "columns softmax",  "columns log_softmax",  "columns logsumexp",
    "rows softmax",     "rows log_softmax",     "rows logsumexp",
    "reduce softmax",   "reduce log_softmax",   "reduce logsumexp",
    "reduce threads",   "where/temperature",    "backward",
};

static const char *const dtype_names[DTYPE_COUNT] = {"f32", "f64"};
static const char *const precision_names[2] = {"exact", "fast"};

typedef struct {
    int tested;
    double reference[ENTRY_COUNT][DTYPE_COUNT][2]; /* worst error against the reference, ULP */
    double scalar[ENTRY_COUNT][DTYPE_COUNT][2];    /* worst distance to the scalar kernel, ULP */
    int64_t checks[ENTRY_COUNT][DTYPE_COUNT][2];
    int64_t failed[ENTRY_COUNT][DTYPE_COUNT][2];
    int64_t failures;
} isa_summary;

static isa_summary summaries[CSM_ISA_COUNT];
static int64_t checks_passed, checks_failed;
/* The first few failures of each (ISA, entry point, dtype, precision) are printed. */
static int failures_printed[CSM_ISA_COUNT][ENTRY_COUNT][DTYPE_COUNT][2];
#define FAILURES_PRINTED_PER_CELL 3

/* One check: one entry point called on one case.  It fails on its first bad
 * element (printed) and keeps the worst errors for the summary. */
typedef struct {
    int isa;
    entry_point entry;
    test_dtype dtype;
    int precision;
    char label[160];
    char context[96]; /* which slice of a multi-row case is being checked */
    double worst_reference, worst_scalar;
    int failed;
} check;

/* What runs now, for the crash handler: a read or write past the end of an
 * array hits a guard page, and the check in progress names the culprit. */
static char running[320] = "setting up\n";

static void report_crash(int signal_number)
{
    static const char prefix[] = "\nCRASH (SIGSEGV or SIGBUS) while running: ";
    (void)signal_number;
    if (write(STDOUT_FILENO, prefix, sizeof prefix - 1) >= 0)
        (void)!write(STDOUT_FILENO, running, strlen(running));
    _exit(3);
}

static void check_begin(check *c, int isa, entry_point entry, test_dtype dtype, int precision, const char *format, ...)
{
    memset(c, 0, sizeof *c);
    c->isa = isa;
    c->entry = entry;
    c->dtype = dtype;
    c->precision = precision;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(c->label, sizeof c->label, format, arguments);
    va_end(arguments);
    snprintf(running, sizeof running, "%s %s %s %s [%s] (a read or write past the end of an array?)\n",
             csm_isa_name(isa), entry_names[entry], dtype_names[dtype], precision_names[precision], c->label);
}

static void check_fail(check *c, const char *format, ...)
{
    if (c->failed)
        return;
    c->failed = 1;
    if (failures_printed[c->isa][c->entry][c->dtype][c->precision]++ >= FAILURES_PRINTED_PER_CELL)
        return;
    printf("FAIL %s %s %s %s [%s%s]: ", csm_isa_name(c->isa), entry_names[c->entry], dtype_names[c->dtype],
           precision_names[c->precision], c->label, c->context);
    va_list arguments;
    va_start(arguments, format);
    vprintf(format, arguments);
    va_end(arguments);
    printf("\n");
}

static void check_condition(check *c, int condition, const char *format, ...)
{
    if (condition || c->failed)
        return;
    char message[256];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    check_fail(c, "%s", message);
}

static void track(double *worst, double value)
{
    if (!(value <= *worst)) /* NaN-safe: an infinite error shows up in the summary */
        *worst = value;
}

/* |a - b| in ULPs of the reference (as ulp_error measures both against it):
 * counting the representable values between a and b instead would make a
 * fast-mode result near 0 and one flushed to 0 look 2^60 apart. */
static double distance_at_reference(double reference, double a, double b, test_dtype dtype)
{
    if (isnan(a) || isnan(b) || isinf(a) || isinf(b) || isinf(reference) || isnan(reference))
        return ulp_distance(a, b, dtype);
    return fabs(a - b) / reference_spacing(reference, dtype);
}

/* One output element: against the reference (allowed ULP) and against the
 * scalar kernel's result (twice that).  Below the normal range only the
 * flush rule applies: one kernel may flush where the other does not. */
static void check_value(check *c, int64_t index, double input, reference_value reference, double computed,
                        double scalar, double allowed)
{
    const int subnormal = isfinite(reference.hi) && fabs(reference.hi) < smallest_normal(c->dtype);
    const double error = ulp_error(reference, computed, c->dtype);
    const double distance = subnormal ? 0.0 : distance_at_reference(reference.hi, computed, scalar, c->dtype);
    track(&c->worst_reference, error);
    track(&c->worst_scalar, distance);
    if (!(error <= allowed) || !(distance <= 2 * allowed))
        check_fail(c,
                   "element %lld: x = %.17g, reference %.17g, got %.17g (%.3g ULP, allowed %.3g), scalar %.17g "
                   "(%.3g ULP apart)",
                   (long long)index, input, reference.hi, computed, error, allowed, scalar, distance);
}

static void check_end(check *c)
{
    isa_summary *s = &summaries[c->isa];
    track(&s->reference[c->entry][c->dtype][c->precision], c->worst_reference);
    track(&s->scalar[c->entry][c->dtype][c->precision], c->worst_scalar);
    s->checks[c->entry][c->dtype][c->precision]++;
    if (c->failed) {
        s->failed[c->entry][c->dtype][c->precision]++;
        s->failures++;
        checks_failed++;
    } else {
        checks_passed++;
    }
}

/* ------------------------------------------------------------------------- */
/* Bars                                                                      */
/* ------------------------------------------------------------------------- */

#define EXACT_ULP 4.0
#define U64 0x1p-53

/* Fast mode: + (2 u (|x_i - m| + W) + n u64) |ref|, relative (tests/reference.py). */
static double allowed_softmax(const reference_row *r, int64_t i, double value, test_dtype dtype, int precision)
{
    if (precision == CSM_EXACT || !isfinite(value) || value == 0)
        return EXACT_ULP;
    const double u = unit_roundoff(dtype);
    const double extra = (2 * u * (r->distance[i] + r->spread) + (double)r->n * U64) * fabs(value);
    return EXACT_ULP + extra / reference_spacing(value, dtype);
}

/* exp(x - m) alone: only the rounding of x - m in fast mode. */
static double allowed_exp_term(const reference_row *r, int64_t i, double value, test_dtype dtype, int precision)
{
    if (precision == CSM_EXACT || !isfinite(value) || value == 0)
        return EXACT_ULP;
    const double extra = 2 * unit_roundoff(dtype) * r->distance[i] * fabs(value);
    return EXACT_ULP + extra / reference_spacing(value, dtype);
}

/* Fast mode: + 2 u (|x_i - m| + W + 1 + log s) + n u64, absolute. */
static double allowed_log_softmax(const reference_row *r, int64_t i, double value, test_dtype dtype, int precision)
{
    if (precision == CSM_EXACT || !isfinite(value))
        return EXACT_ULP;
    const double u = unit_roundoff(dtype);
    const double extra = 2 * u * (r->distance[i] + r->spread + 1 + fabs((double)r->log_sum)) + (double)r->n * U64;
    return EXACT_ULP + extra / reference_spacing(value, dtype);
}

/* 4 ULP + 4 ULP of log(s) (the cancellation in m + log s); fast mode adds
 * the classical sum's error, u W absolute in log s. */
static double allowed_logsumexp(const reference_row *r, test_dtype dtype, int precision)
{
    if (!isfinite(r->logsumexp.hi))
        return EXACT_ULP;
    const double u = unit_roundoff(dtype);
    double extra = 4 * 2 * u * fabs((double)r->log_sum);
    if (precision == CSM_FAST)
        extra += 2 * u * (r->spread + 1 + fabs((double)r->log_sum)) + (double)r->n * U64;
    return EXACT_ULP + extra / reference_spacing(r->logsumexp.hi, dtype);
}

/* ------------------------------------------------------------------------- */
/* Typed arrays and guarded memory                                           */
/* ------------------------------------------------------------------------- */

static size_t element_size(test_dtype dtype) { return dtype == DTYPE_F32 ? sizeof(float) : sizeof(double); }

static double get(const void *array, int64_t i, test_dtype dtype)
{
    return dtype == DTYPE_F32 ? ((const float *)array)[i] : ((const double *)array)[i];
}

static void set(void *array, int64_t i, test_dtype dtype, double value)
{
    if (dtype == DTYPE_F32)
        ((float *)array)[i] = (float)value;
    else
        ((double *)array)[i] = value;
}

#define SENTINEL 12345.0

/* A region whose last usable byte is followed by an inaccessible page. */
typedef struct {
    unsigned char *end;
    size_t capacity;
} guarded_region;

static guarded_region guarded_new(size_t capacity)
{
    guarded_region g;
#ifdef HAVE_GUARD_PAGES
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    capacity = (capacity + page - 1) / page * page;
    unsigned char *base = mmap(NULL, capacity + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base + capacity, page, PROT_NONE) != 0) {
        perror("guard page");
        exit(2);
    }
    g.end = base + capacity;
#else
    unsigned char *base = malloc(capacity);
    if (!base)
        exit(2);
    g.end = base + capacity;
#endif
    g.capacity = capacity;
    return g;
}

/* `count` elements ending exactly at the guard page, preceded by a sentinel. */
static void *guarded_array(const guarded_region *g, int64_t count, test_dtype dtype)
{
    const size_t bytes = (size_t)(count + 1) * element_size(dtype);
    if (bytes > g->capacity) {
        fprintf(stderr, "guarded region too small (%zu > %zu bytes)\n", bytes, g->capacity);
        exit(2);
    }
    void *array = g->end - (size_t)count * element_size(dtype);
    set(array, -1, dtype, SENTINEL);
    return array;
}

static int sentinel_intact(const void *array, test_dtype dtype) { return get(array, -1, dtype) == SENTINEL; }

#define REGION_BYTES (4u << 20)
static guarded_region region_x, region_y, region_z;

/* ------------------------------------------------------------------------- */
/* Kernel calls for either dtype                                             */
/* ------------------------------------------------------------------------- */

static void call_partial(const csm_kernel_table *k, test_dtype dtype, const void *x, void *y, int64_t n, int precision,
                         csm_partial *partial)
{
    if (dtype == DTYPE_F32)
        csm_partial_of_f32(k, x, NULL, y, n, precision, NULL, partial);
    else
        csm_partial_of_f64(k, x, NULL, y, n, precision, NULL, partial);
}

static void call_scale(const csm_kernel_table *k, test_dtype dtype, void *y, int64_t n, int precision,
                       const csm_row_scale *scale)
{
    if (dtype == DTYPE_F32)
        k->scale_f32(y, n, precision, scale);
    else
        k->scale_f64(y, n, precision, scale);
}

static void call_finish(const csm_kernel_table *k, test_dtype dtype, const void *x, void *y, int64_t n, int operation,
                        int precision, const csm_row_scale *scale)
{
    if (dtype == DTYPE_F32)
        k->finish_f32(x, NULL, y, n, operation, precision, NULL, scale);
    else
        k->finish_f64(x, NULL, y, n, operation, precision, NULL, scale);
}

static void call_columns(const csm_kernel_table *k, test_dtype dtype, const void *x, void *y, int64_t n, int64_t inner,
                         int64_t columns, int operation, int precision)
{
    if (dtype == DTYPE_F32)
        k->columns_f32(x, NULL, y, n, inner, columns, operation, precision, NULL);
    else
        k->columns_f64(x, NULL, y, n, inner, columns, operation, precision, NULL);
}

static int has_rows(const csm_kernel_table *k, test_dtype dtype)
{
    return dtype == DTYPE_F32 ? k->rows_f32 != NULL : k->rows_f64 != NULL;
}

static void call_rows(const csm_kernel_table *k, test_dtype dtype, const void *x, void *y, int64_t rows, int64_t n,
                      int operation, int precision)
{
    if (dtype == DTYPE_F32)
        k->rows_f32(x, NULL, y, rows, n, operation, precision, NULL);
    else
        k->rows_f64(x, NULL, y, rows, n, operation, precision, NULL);
}

static int64_t column_tile(const csm_kernel_table *k, test_dtype dtype)
{
    return dtype == DTYPE_F32 ? k->column_tile_f32 : k->column_tile_f64;
}

static int call_reduce(test_dtype dtype, int operation, int precision, const void *x, void *y, int64_t outer, int64_t n,
                       int64_t inner)
{
    if (dtype == DTYPE_F32)
        return csm_reduce_f32(operation, precision, x, y, outer, n, inner);
    return csm_reduce_f64(operation, precision, x, y, outer, n, inner);
}

/* ------------------------------------------------------------------------- */
/* Test rows                                                                 */
/* ------------------------------------------------------------------------- */

typedef enum {
    PATTERN_UNIFORM_1,
    PATTERN_UNIFORM_10,
    PATTERN_UNIFORM_100,
    PATTERN_UNIFORM_1000,
    PATTERN_LARGE_OFFSET, /* x - max far from exact in the dtype: the TwoSum correction matters */
    PATTERN_TIES,         /* several elements equal to the maximum */
    PATTERN_CONSTANT,
    PATTERN_NEAR_ZERO, /* log_softmax of the maximum near 0: the log1p path */
    PATTERN_SUBNORMAL, /* outputs below the normal range */
    PATTERN_NEG_INF_MIXED,
    PATTERN_ALL_NEG_INF,
    PATTERN_NAN,
    PATTERN_POS_INF,
    PATTERN_NAN_AND_INF,
    PATTERN_COUNT
} row_pattern;

static const char *const pattern_names[PATTERN_COUNT] = {
    "uniform +-1",     "uniform +-10", "uniform +-100", "uniform +-1000",  "large offset",
    "ties at the max", "constant",     "near 0",        "subnormal",       "-inf mixed in",
    "all -inf",        "NaN",          "+inf",          "NaN, +inf, -inf",
};

static uint64_t random_state;

static uint64_t random_next(void)
{
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return random_state * 0x2545F4914F6CDD1DULL;
}

static double random_uniform(double low, double high)
{
    return low + (high - low) * ((double)(random_next() >> 11) * 0x1p-53);
}

static int64_t random_index(int64_t n) { return (int64_t)(random_next() % (uint64_t)n); }

/* Values exactly representable in the dtype. */
static void generate_row(row_pattern pattern, int64_t n, test_dtype dtype, uint64_t seed, double *x)
{
    random_state = 0x9E3779B97F4A7C15ULL ^
                   (seed * 0x100000001B3ULL + (uint64_t)pattern * 7919 + (uint64_t)n * 104729 + (uint64_t)dtype);
    for (int k = 0; k < 4; k++)
        random_next();
    const int f32 = dtype == DTYPE_F32;
    for (int64_t i = 0; i < n; i++) {
        switch (pattern) {
        case PATTERN_UNIFORM_1:
            x[i] = random_uniform(-1, 1);
            break;
        case PATTERN_UNIFORM_100:
            x[i] = random_uniform(-100, 100);
            break;
        case PATTERN_UNIFORM_1000:
            x[i] = random_uniform(-1000, 1000);
            break;
        case PATTERN_LARGE_OFFSET:
            x[i] = (f32 ? 12345.678 : 1234567.891) + random_uniform(-30, 30);
            break;
        case PATTERN_CONSTANT:
            x[i] = n % 2 ? 3.5 : -7.25;
            break;
        case PATTERN_NEAR_ZERO:
            x[i] = f32 ? random_uniform(-30, -17) : random_uniform(-60, -37);
            break;
        case PATTERN_SUBNORMAL:
            x[i] = f32 ? random_uniform(-105, -80) : random_uniform(-745, -700);
            break;
        case PATTERN_ALL_NEG_INF:
            x[i] = -INFINITY;
            break;
        default:
            x[i] = random_uniform(-10, 10);
            break;
        }
    }
    switch (pattern) {
    case PATTERN_TIES:
        for (int64_t k = 0; k <= n / 4; k++)
            x[random_index(n)] = 10.5;
        break;
    case PATTERN_NEAR_ZERO:
    case PATTERN_SUBNORMAL:
        x[random_index(n)] = 0.0;
        break;
    case PATTERN_NEG_INF_MIXED: {
        for (int64_t i = 0; i < n; i++)
            if (random_next() % 3 == 0)
                x[i] = -INFINITY;
        /* two statements: the order of the two draws must not depend on the compiler */
        const int64_t finite = random_index(n);
        x[finite] = random_uniform(-10, 10);
        break;
    }
    case PATTERN_NAN:
        x[random_index(n)] = -INFINITY;
        x[random_index(n)] = NAN;
        break;
    case PATTERN_POS_INF:
        x[random_index(n)] = -INFINITY;
        x[random_index(n)] = INFINITY;
        if (n > 5)
            x[random_index(n)] = INFINITY;
        break;
    case PATTERN_NAN_AND_INF:
        x[random_index(n)] = -INFINITY;
        x[random_index(n)] = INFINITY;
        x[random_index(n)] = NAN;
        break;
    default:
        break;
    }
    if (f32)
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)x[i];
}

/* The scalar kernel's results for a row, the way the driver combines its
 * entry points: what every other ISA is compared with. */
typedef struct {
    int ready;
    csm_row_state partial_state; /* masked */
    csm_row_state store_state;
    long double rest, store_rest;
    double logsumexp;
    double *exp_term; /* storing partial */
    double *softmax;  /* storing partial + scale (NaN rows when special) */
    double *softmax_finished;
    double *log_softmax;
} scalar_result;

typedef struct {
    row_pattern pattern;
    test_dtype dtype;
    int64_t n;
    double *x;
    reference_row reference;
    scalar_result scalar[2]; /* per precision, computed on first use */
} test_row;

static void test_row_init(test_row *row, row_pattern pattern, test_dtype dtype, int64_t n, uint64_t seed)
{
    memset(row, 0, sizeof *row);
    row->pattern = pattern;
    row->dtype = dtype;
    row->n = n;
    row->x = malloc((size_t)n * sizeof(double));
    if (!row->x)
        abort();
    generate_row(pattern, n, dtype, seed, row->x);
    reference_compute(row->x, n, &row->reference);
}

static void test_row_free(test_row *row)
{
    free(row->x);
    reference_free(&row->reference);
    for (int p = 0; p < 2; p++) {
        free(row->scalar[p].exp_term);
        free(row->scalar[p].softmax);
        free(row->scalar[p].softmax_finished);
        free(row->scalar[p].log_softmax);
    }
}

static long double partial_rest(const csm_partial *p) { return (long double)p->rest_hi + p->rest_lo; }

static double *new_doubles(int64_t n)
{
    double *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!p)
        abort();
    return p;
}

static const scalar_result *scalar_of(test_row *row, int precision)
{
    scalar_result *s = &row->scalar[precision];
    if (s->ready)
        return s;
    const csm_kernel_table *k = &csm_kernels_scalar;
    const test_dtype dtype = row->dtype;
    const int64_t n = row->n;
    void *x = malloc((size_t)n * element_size(dtype)), *y = malloc((size_t)n * element_size(dtype));
    if (!x || !y)
        abort();
    for (int64_t i = 0; i < n; i++)
        set(x, i, dtype, row->x[i]);
    s->exp_term = new_doubles(n);
    s->softmax = new_doubles(n);
    s->softmax_finished = new_doubles(n);
    s->log_softmax = new_doubles(n);

    csm_partial masked, stored;
    csm_row_scale log_scale, softmax_scale, store_scale;
    call_partial(k, dtype, x, NULL, n, precision, &masked);
    s->partial_state = csm_row_scale_from_partials(&masked, 1, CSM_LOG_SOFTMAX, NULL, &log_scale);
    csm_row_scale_from_partials(&masked, 1, CSM_SOFTMAX, NULL, &softmax_scale);
    s->rest = partial_rest(&masked);
    const double logsumexp = csm_logsumexp_from_state(s->partial_state, &log_scale);
    s->logsumexp = dtype == DTYPE_F32 ? (float)logsumexp : logsumexp;

    call_partial(k, dtype, x, y, n, precision, &stored);
    s->store_state = csm_row_scale_from_partials(&stored, 1, CSM_SOFTMAX, NULL, &store_scale);
    s->store_rest = partial_rest(&stored);
    for (int64_t i = 0; i < n; i++)
        s->exp_term[i] = get(y, i, dtype);
    if (s->store_state == CSM_ROW_FINITE) {
        call_scale(k, dtype, y, n, precision, &store_scale);
        for (int64_t i = 0; i < n; i++)
            s->softmax[i] = get(y, i, dtype);
    } else {
        for (int64_t i = 0; i < n; i++)
            s->softmax[i] = NAN;
    }
    if (s->partial_state == CSM_ROW_FINITE) {
        call_finish(k, dtype, x, y, n, CSM_SOFTMAX, precision, &softmax_scale);
        for (int64_t i = 0; i < n; i++)
            s->softmax_finished[i] = get(y, i, dtype);
        call_finish(k, dtype, x, y, n, CSM_LOG_SOFTMAX, precision, &log_scale);
        for (int64_t i = 0; i < n; i++)
            s->log_softmax[i] = get(y, i, dtype);
    } else {
        for (int64_t i = 0; i < n; i++)
            s->softmax_finished[i] = s->log_softmax[i] = NAN;
    }
    free(x);
    free(y);
    s->ready = 1;
    return s;
}

/* Sizes of the kernel-level rows: every tail length of every vector width. */
static const int64_t extra_sizes[] = {100, 127, 128, 129, 255, 256, 257, 1000, 1023, 4099};
#define SMALL_SIZES 70
#define SIZE_COUNT (SMALL_SIZES + (int)(sizeof extra_sizes / sizeof extra_sizes[0]))
#define COLUMN_SIZE_LIMIT 1023 /* column slabs of the 64-wide scalar tile stay small under emulation */

static int64_t size_at(int index) { return index < SMALL_SIZES ? index + 1 : extra_sizes[index - SMALL_SIZES]; }

/* rows[dtype][size index][pattern] */
static test_row rows[DTYPE_COUNT][SIZE_COUNT][PATTERN_COUNT];

/* ------------------------------------------------------------------------- */
/* Row entry points: partial, scale, finish                                  */
/* ------------------------------------------------------------------------- */

static const char *state_name(csm_row_state state)
{
    static const char *const names[] = {"finite", "NaN", "+inf", "-inf"};
    return names[state];
}

/* Relative error of a partial's rest in units of the dtype's epsilon, with
 * room for terms flushed below the normal range. */
static double rest_error(long double got, long double reference, int64_t n, test_dtype dtype)
{
    const long double difference = fabsl(got - reference);
    if (isnan(difference))
        return INFINITY;
    if (difference <= (long double)n * smallest_normal(dtype))
        return 0.0;
    return (double)(difference / (reference * 2 * unit_roundoff(dtype)));
}

static void test_row_kernels(int isa, const csm_kernel_table *k, test_row *row, int precision)
{
    const test_dtype dtype = row->dtype;
    const int64_t n = row->n;
    const reference_row *r = &row->reference;
    const scalar_result *s = scalar_of(row, precision);
    const char *pattern = pattern_names[row->pattern];
    void *x = guarded_array(&region_x, n, dtype);
    void *y = guarded_array(&region_y, n, dtype);
    for (int64_t i = 0; i < n; i++)
        set(x, i, dtype, row->x[i]);
    const double u = unit_roundoff(dtype);
    check c;

    /* partial without y: exact mode counts the maxima apart and sums the
     * others; fast mode sums every term of a finite row (count 0) */
    csm_partial masked;
    csm_row_scale log_scale, softmax_scale;
    check_begin(&c, isa, ENTRY_PARTIAL, dtype, precision, "n=%lld %s", (long long)n, pattern);
    call_partial(k, dtype, x, NULL, n, precision, &masked);
    const csm_row_state state = csm_row_scale_from_partials(&masked, 1, CSM_LOG_SOFTMAX, NULL, &log_scale);
    csm_row_scale_from_partials(&masked, 1, CSM_SOFTMAX, NULL, &softmax_scale);
    check_condition(&c, state == r->state && state == s->partial_state, "state %s, reference %s, scalar %s",
                    state_name(state), state_name(r->state), state_name(s->partial_state));
    if (state == CSM_ROW_FINITE && r->state == CSM_ROW_FINITE) {
        const int fast = precision == CSM_FAST;
        const long double count = fast ? 0.0L : r->count, rest = fast ? r->count + r->rest : r->rest;
        const double allowed = EXACT_ULP + (fast ? r->spread + (double)n * U64 / (2 * u) : 0);
        const double error = rest_error(partial_rest(&masked), rest, n, dtype);
        const double distance = rest_error(partial_rest(&masked), s->rest, n, dtype);
        track(&c.worst_reference, error);
        track(&c.worst_scalar, distance);
        check_condition(&c, masked.max == (double)r->max, "max %.17g, reference %.17Lg", masked.max, r->max);
        check_condition(&c, masked.count == (double)count, "count %.17g, reference %.17Lg", masked.count, count);
        check_condition(&c, error <= allowed && distance <= 2 * allowed,
                        "rest %.21Lg, reference %.21Lg (%.3g eps, allowed %.3g), scalar %.21Lg", partial_rest(&masked),
                        rest, error, allowed, s->rest);
    }
    check_end(&c);

    check_begin(&c, isa, ENTRY_PARTIAL_LOGSUMEXP, dtype, precision, "n=%lld %s", (long long)n, pattern);
    const double logsumexp = csm_logsumexp_from_state(state, &log_scale);
    check_value(&c, 0, NAN, r->logsumexp, dtype == DTYPE_F32 ? (float)logsumexp : logsumexp, s->logsumexp,
                allowed_logsumexp(r, dtype, precision));
    check_end(&c);

    /* storing partial: y = exp(x - max); a special row only needs a special state */
    csm_partial stored;
    csm_row_scale store_scale;
    for (int64_t i = 0; i < n; i++)
        set(y, i, dtype, SENTINEL);
    check_begin(&c, isa, ENTRY_PARTIAL_STORE, dtype, precision, "n=%lld %s", (long long)n, pattern);
    call_partial(k, dtype, x, y, n, precision, &stored);
    const csm_row_state store_state = csm_row_scale_from_partials(&stored, 1, CSM_SOFTMAX, NULL, &store_scale);
    check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
    check_condition(
        &c, (store_state == CSM_ROW_FINITE) == (r->state == CSM_ROW_FINITE) && store_state == s->store_state,
        "state %s, reference %s, scalar %s", state_name(store_state), state_name(r->state), state_name(s->store_state));
    if (store_state == CSM_ROW_FINITE && r->state == CSM_ROW_FINITE) {
        /* The partial may report a reference point within ln2/2 of the max instead of the max
         * (kernel_table.h); its terms and sum are then relative to it: bring them back to the
         * max (the product's rounding is far below the tolerance). */
        const long double shift = (long double)stored.max - r->max;
        const long double to_max = stored.max == (double)r->max ? 1.0L : expl(shift);
        for (int64_t i = 0; i < n; i++)
            check_value(&c, i, row->x[i], r->exp_term[i], (double)(get(y, i, dtype) * to_max), s->exp_term[i],
                        allowed_exp_term(r, i, r->exp_term[i].hi, dtype, precision));
        const long double sum = r->count + r->rest;
        const double allowed = EXACT_ULP + (precision == CSM_FAST ? r->spread + (double)n * U64 / (2 * u) : 0);
        const double error = rest_error(partial_rest(&stored) * to_max, sum, n, dtype);
        const double distance = rest_error(partial_rest(&stored) * to_max, s->store_rest, n, dtype);
        track(&c.worst_reference, error);
        track(&c.worst_scalar, distance);
        check_condition(&c, stored.count == 0 && fabsl(shift) <= 0.35L && error <= allowed && distance <= 2 * allowed,
                        "count %g, max %.17g, sum %.21Lg, reference %.21Lg (%.3g eps), scalar %.21Lg", stored.count,
                        stored.max, partial_rest(&stored), sum, error, s->store_rest);
    }
    check_end(&c);

    if (r->state != CSM_ROW_FINITE || store_state != CSM_ROW_FINITE || state != CSM_ROW_FINITE)
        return; /* the driver fills special rows itself */

    check_begin(&c, isa, ENTRY_SCALE, dtype, precision, "n=%lld %s", (long long)n, pattern);
    call_scale(k, dtype, y, n, precision, &store_scale);
    check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
    for (int64_t i = 0; i < n; i++)
        check_value(&c, i, row->x[i], r->softmax[i], get(y, i, dtype), s->softmax[i],
                    allowed_softmax(r, i, r->softmax[i].hi, dtype, precision));
    check_end(&c);

    check_begin(&c, isa, ENTRY_FINISH_SOFTMAX, dtype, precision, "n=%lld %s", (long long)n, pattern);
    call_finish(k, dtype, x, y, n, CSM_SOFTMAX, precision, &softmax_scale);
    check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
    for (int64_t i = 0; i < n; i++)
        check_value(&c, i, row->x[i], r->softmax[i], get(y, i, dtype), s->softmax_finished[i],
                    allowed_softmax(r, i, r->softmax[i].hi, dtype, precision));
    check_end(&c);

    check_begin(&c, isa, ENTRY_FINISH_LOG_SOFTMAX, dtype, precision, "n=%lld %s", (long long)n, pattern);
    call_finish(k, dtype, x, y, n, CSM_LOG_SOFTMAX, precision, &log_scale);
    check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
    for (int64_t i = 0; i < n; i++)
        check_value(&c, i, row->x[i], r->log_softmax[i], get(y, i, dtype), s->log_softmax[i],
                    allowed_log_softmax(r, i, r->log_softmax[i].hi, dtype, precision));
    check_end(&c);
}

/* ------------------------------------------------------------------------- */
/* Whole-operation outputs: shared by columns, rows and reduce               */
/* ------------------------------------------------------------------------- */

static const int operations[3] = {CSM_SOFTMAX, CSM_LOG_SOFTMAX, CSM_LOGSUMEXP};

/* Checks the outputs of one row for a whole operation; `stride` is the
 * distance between its elements in y (logsumexp: y points at its value). */
static void check_row_output(check *c, test_row *row, int operation, int precision, const void *y, int64_t stride)
{
    const reference_row *r = &row->reference;
    const scalar_result *s = scalar_of(row, precision);
    const test_dtype dtype = row->dtype;
    if (operation == CSM_LOGSUMEXP) {
        check_value(c, 0, NAN, r->logsumexp, get(y, 0, dtype), s->logsumexp, allowed_logsumexp(r, dtype, precision));
        return;
    }
    for (int64_t i = 0; i < row->n && !c->failed; i++) {
        const double got = get(y, i * stride, dtype);
        if (operation == CSM_SOFTMAX)
            check_value(c, i, row->x[i], r->softmax[i], got, s->softmax[i],
                        allowed_softmax(r, i, r->softmax[i].hi, dtype, precision));
        else
            check_value(c, i, row->x[i], r->log_softmax[i], got, s->log_softmax[i],
                        allowed_log_softmax(r, i, r->log_softmax[i].hi, dtype, precision));
    }
}

static entry_point entry_for(entry_point softmax_entry, int operation)
{
    return (entry_point)(softmax_entry + (operation == CSM_SOFTMAX ? 0 : operation == CSM_LOG_SOFTMAX ? 1 : 2));
}

/* Column tiles of an (n, inner) slab whose columns are the rows of one size:
 * a full tile, then a partial tile of `partial` columns ending the slab at
 * the guard page. */
static void test_columns(int isa, const csm_kernel_table *k, test_row *group, int precision)
{
    const test_dtype dtype = group[0].dtype;
    const int64_t n = group[0].n;
    const int64_t tile = column_tile(k, dtype);
    const int64_t partial = 1 + (n * 5 + dtype) % tile;
    const int64_t inner = tile + partial;
    void *x = guarded_array(&region_x, n * inner, dtype);
    for (int64_t j = 0; j < inner; j++)
        for (int64_t i = 0; i < n; i++)
            set(x, i * inner + j, dtype, group[(j + n) % PATTERN_COUNT].x[i]);
    for (int o = 0; o < 3; o++) {
        const int operation = operations[o];
        const int64_t outputs = operation == CSM_LOGSUMEXP ? inner : n * inner;
        void *y = guarded_array(&region_y, outputs, dtype);
        check c;
        check_begin(&c, isa, entry_for(ENTRY_COLUMNS_SOFTMAX, operation), dtype, precision,
                    "n=%lld inner=%lld (tiles of %lld + %lld)", (long long)n, (long long)inner, (long long)tile,
                    (long long)partial);
        call_columns(k, dtype, x, y, n, inner, tile, operation, precision);
        call_columns(k, dtype, (const char *)x + tile * element_size(dtype), (char *)y + tile * element_size(dtype), n,
                     inner, partial, operation, precision);
        check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
        for (int64_t j = 0; j < inner && !c.failed; j++) {
            test_row *row = &group[(j + n) % PATTERN_COUNT];
            const void *column = (const char *)y + (size_t)j * element_size(dtype);
            snprintf(c.context, sizeof c.context, ", column %lld: %s", (long long)j, pattern_names[row->pattern]);
            check_row_output(&c, row, operation, precision, column, operation == CSM_LOGSUMEXP ? 0 : inner);
        }
        check_end(&c);
    }
}

/* Batches of short rows: two full tiles and a partial one. */
static void test_rows(int isa, const csm_kernel_table *k, test_row *group, int precision)
{
    const test_dtype dtype = group[0].dtype;
    const int64_t n = group[0].n;
    if (!has_rows(k, dtype) || n > k->short_row_limit)
        return;
    const int64_t count = 2 * column_tile(k, dtype) + 3;
    void *x = guarded_array(&region_x, count * n, dtype);
    for (int64_t b = 0; b < count; b++)
        for (int64_t i = 0; i < n; i++)
            set(x, b * n + i, dtype, group[(b + n) % PATTERN_COUNT].x[i]);
    for (int o = 0; o < 3; o++) {
        const int operation = operations[o];
        const int64_t y_row = operation == CSM_LOGSUMEXP ? 1 : n;
        void *y = guarded_array(&region_y, count * y_row, dtype);
        check c;
        check_begin(&c, isa, entry_for(ENTRY_ROWS_SOFTMAX, operation), dtype, precision, "%lld rows of n=%lld",
                    (long long)count, (long long)n);
        call_rows(k, dtype, x, y, count, n, operation, precision);
        check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
        for (int64_t b = 0; b < count && !c.failed; b++) {
            test_row *row = &group[(b + n) % PATTERN_COUNT];
            snprintf(c.context, sizeof c.context, ", row %lld: %s", (long long)b, pattern_names[row->pattern]);
            check_row_output(&c, row, operation, precision, (const char *)y + (size_t)(b * y_row) * element_size(dtype),
                             1);
        }
        check_end(&c);
    }
}

/* ------------------------------------------------------------------------- */
/* csm_reduce end to end                                                     */
/* ------------------------------------------------------------------------- */

/* An (outer, n, inner) case whose reduced slices are test rows. */
typedef struct {
    const char *what;
    int64_t outer, n, inner;
    test_row **slices; /* outer * inner, slab-major */
} reduce_case;

static void run_reduce_case(int isa, const reduce_case *rc, test_dtype dtype)
{
    const int64_t outer = rc->outer, n = rc->n, inner = rc->inner;
    const int64_t elements = outer * n * inner;
    for (int precision = 0; precision < 2; precision++) {
        for (int o = 0; o < 3; o++) {
            const int operation = operations[o];
            /* in place (y == x) for softmax and log_softmax, then out of place */
            for (int in_place = operation == CSM_LOGSUMEXP ? 0 : 1; in_place >= 0; in_place--) {
                void *x = guarded_array(&region_x, elements, dtype);
                for (int64_t s = 0; s < outer; s++)
                    for (int64_t j = 0; j < inner; j++)
                        for (int64_t i = 0; i < n; i++)
                            set(x, (s * n + i) * inner + j, dtype, rc->slices[s * inner + j]->x[i]);
                const int64_t outputs = operation == CSM_LOGSUMEXP ? outer * inner : elements;
                void *y = in_place ? x : guarded_array(&region_y, outputs, dtype);
                check c;
                check_begin(&c, isa, entry_for(ENTRY_REDUCE_SOFTMAX, operation), dtype, precision,
                            "%s: (%lld, %lld, %lld)%s", rc->what, (long long)outer, (long long)n, (long long)inner,
                            in_place ? " in place" : "");
                const int status = call_reduce(dtype, operation, precision, x, y, outer, n, inner);
                check_condition(&c, status == CSM_OK, "status %d", status);
                check_condition(&c, sentinel_intact(y, dtype), "wrote before y");
                for (int64_t s = 0; s < outer && !c.failed; s++) {
                    for (int64_t j = 0; j < inner && !c.failed; j++) {
                        test_row *row = rc->slices[s * inner + j];
                        const int64_t first = operation == CSM_LOGSUMEXP ? s * inner + j : s * n * inner + j;
                        snprintf(c.context, sizeof c.context, ", slice (%lld, %lld): %s", (long long)s, (long long)j,
                                 pattern_names[row->pattern]);
                        check_row_output(&c, row, operation, precision,
                                         (const char *)y + (size_t)first * element_size(dtype),
                                         operation == CSM_LOGSUMEXP ? 0 : inner);
                    }
                }
                check_end(&c);
            }
        }
    }
}

/* Long rows (above the driver's 128 KiB short-row limit for both dtypes, so
 * cut into blocks that are spread over threads): their own references. */
#define LONG_ROW 33000
static const struct {
    row_pattern pattern;
    int64_t n;
} long_rows[] = {
    {PATTERN_UNIFORM_10, LONG_ROW},      {PATTERN_UNIFORM_1000, LONG_ROW}, {PATTERN_NEAR_ZERO, LONG_ROW},
    {PATTERN_NEG_INF_MIXED, LONG_ROW},   {PATTERN_NAN, LONG_ROW},          {PATTERN_POS_INF, LONG_ROW},
    {PATTERN_UNIFORM_100, LONG_ROW + 1},
};
#define LONG_ROW_COUNT ((int)(sizeof long_rows / sizeof long_rows[0]))
static test_row long_row_data[DTYPE_COUNT][LONG_ROW_COUNT + 1]; /* + one row of whole -inf blocks */

static void make_long_rows(test_dtype dtype)
{
    for (int i = 0; i < LONG_ROW_COUNT; i++)
        test_row_init(&long_row_data[dtype][i], long_rows[i].pattern, dtype, long_rows[i].n, 11);
    /* whole blocks of -inf (a block's max is -inf) between finite ones */
    test_row *row = &long_row_data[dtype][LONG_ROW_COUNT];
    memset(row, 0, sizeof *row);
    row->pattern = PATTERN_NEG_INF_MIXED;
    row->dtype = dtype;
    row->n = LONG_ROW;
    row->x = malloc((size_t)row->n * sizeof(double));
    if (!row->x)
        abort();
    generate_row(PATTERN_UNIFORM_10, row->n, dtype, 12, row->x);
    for (int64_t i = 5000; i < 25000; i++) /* whole blocks: f32 1 and 2 (8192 elements), f64 2 to 5 (4096) */
        row->x[i] = -INFINITY;
    reference_compute(row->x, row->n, &row->reference);
}

static void test_reduce(int isa, test_dtype dtype)
{
    static const int64_t row_sizes[] = {1, 3, 8, 33, 64, 65, 257, 4099};
    static const struct {
        int64_t n, inner;
    } column_shapes[] = {{1, 2}, {5, 7}, {64, 19}, {257, 3}, {33, 70}};
    test_row *slices[2 * 70]; /* the widest case: 2 slabs of 70 columns */

    for (size_t k = 0; k < sizeof row_sizes / sizeof row_sizes[0]; k++) {
        int index = 0;
        while (size_at(index) != row_sizes[k])
            index++;
        for (int p = 0; p < PATTERN_COUNT; p++)
            slices[p] = &rows[dtype][index][p];
        reduce_case rc = {"rows", PATTERN_COUNT, row_sizes[k], 1, slices};
        run_reduce_case(isa, &rc, dtype);
    }
    for (size_t k = 0; k < sizeof column_shapes / sizeof column_shapes[0]; k++) {
        int index = 0;
        while (size_at(index) != column_shapes[k].n)
            index++;
        const int64_t inner = column_shapes[k].inner;
        for (int64_t s = 0; s < 2 * inner; s++)
            slices[s] = &rows[dtype][index][(s * 5 + k) % PATTERN_COUNT];
        reduce_case rc = {"columns", 2, column_shapes[k].n, inner, slices};
        run_reduce_case(isa, &rc, dtype);
    }
    for (int i = 0; i <= LONG_ROW_COUNT; i++) {
        slices[0] = &long_row_data[dtype][i];
        reduce_case rc = {pattern_names[slices[0]->pattern], 1, slices[0]->n, 1, slices};
        run_reduce_case(isa, &rc, dtype);
    }
}

/* Results are bitwise identical for every thread count (csoftmax.h). */
static void test_thread_determinism(int isa, test_dtype dtype)
{
    static const struct {
        int64_t outer, n, inner;
    } shapes[] = {{1, 70001, 1}, {3, LONG_ROW, 1}, {2000, 60, 1}, {4, 1000, 33}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t outer = shapes[k].outer, n = shapes[k].n, inner = shapes[k].inner;
        const int64_t elements = outer * n * inner;
        void *x = guarded_array(&region_x, elements, dtype);
        random_state = 0x5DEECE66DULL + k;
        for (int64_t i = 0; i < elements; i++)
            set(x, i, dtype, random_uniform(-20, 20));
        for (int precision = 0; precision < 2; precision++) {
            for (int o = 0; o < 3; o++) {
                const int operation = operations[o];
                const int64_t outputs = operation == CSM_LOGSUMEXP ? outer * inner : elements;
                void *serial = guarded_array(&region_y, outputs, dtype);
                void *parallel = guarded_array(&region_z, outputs, dtype);
                csm_set_num_threads(1);
                call_reduce(dtype, operation, precision, x, serial, outer, n, inner);
                csm_set_num_threads(4);
                call_reduce(dtype, operation, precision, x, parallel, outer, n, inner);
                csm_set_num_threads(0);
                check c;
                check_begin(&c, isa, ENTRY_REDUCE_THREADS, dtype, precision, "op %d (%lld, %lld, %lld), 1 vs 4 threads",
                            operation, (long long)outer, (long long)n, (long long)inner);
                check_condition(&c, memcmp(serial, parallel, (size_t)outputs * element_size(dtype)) == 0,
                                "results differ between 1 and 4 threads");
                check_end(&c);
            }
        }
    }
}

/* Masks, temperatures and gradients: every ISA against the scalar kernel (the
 * Python suite checks the scalar kernel itself against mpmath).  Outputs agree
 * to 8 ULP and in every special value; excluded outputs are exactly 0 / -inf. */
#define MASKED_ULP 8.0

static int same_output(double a, double b, test_dtype dtype)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b) || fabs(a) < smallest_normal(dtype) || fabs(b) < smallest_normal(dtype))
        return a == b || (fabs(a) < smallest_normal(dtype) && fabs(b) < smallest_normal(dtype));
    return ulp_distance(a, b, dtype) <= MASKED_ULP;
}

static void fill_masked_case(void *x, uint8_t *where, int64_t elements, int64_t n, test_dtype dtype, uint64_t seed)
{
    random_state = seed;
    for (int64_t i = 0; i < elements; i++) {
        set(x, i, dtype, random_uniform(-30, 30));
        where[i] = random_uniform(0, 1) < 0.7;
    }
    /* specials: hidden under the mask, included, and whole excluded slices */
    for (int64_t i = 0; i + 3 < elements; i += 97) {
        set(x, i, dtype, NAN);
        where[i] = 0;
        set(x, i + 1, dtype, -INFINITY);
        set(x, i + 2, dtype, INFINITY);
        where[i + 2] = i % 3 == 0;
    }
    for (int64_t i = 0; i < n && i < elements; i++)
        where[i] = 0;
}

static void test_masked(int isa, test_dtype dtype)
{
    static const struct {
        int64_t outer, n, inner;
    } shapes[] = {{37, 1, 1},  {37, 3, 1},   {37, 8, 1},    {37, 17, 1}, {37, 64, 1}, {37, 65, 1},
                  {5, 257, 1}, {3, 4099, 1}, {1, 33000, 1}, {2, 33, 70}, {3, 5, 7},   {2, 64, 19}};
    static const double temperatures[] = {1.0, 0.37, 3.0};
    const size_t size = element_size(dtype);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const int64_t outer = shapes[k].outer, n = shapes[k].n, inner = shapes[k].inner;
        const int64_t elements = outer * n * inner;
        void *x = guarded_array(&region_x, elements, dtype);
        uint8_t *where = malloc((size_t)elements);
        void *expected = malloc((size_t)elements * size);
        if (!where || !expected)
            abort();
        fill_masked_case(x, where, elements, inner == 1 ? n : n * inner, dtype, 0xC0FFEE + k);
        for (int t = 0; t < 3; t++) {
            for (int o = 0; o < 3; o++) {
                const int operation = operations[o];
                if (operation == CSM_LOGSUMEXP && temperatures[t] != 1.0)
                    continue;
                const int64_t outputs = operation == CSM_LOGSUMEXP ? outer * inner : elements;
                const csm_options options = {t == 2 ? NULL : where, temperatures[t], 0};
                void *y = guarded_array(&region_y, outputs, dtype);
                csm_set_isa(CSM_ISA_SCALAR);
                int status = dtype == DTYPE_F32
                                 ? csm_reduce_options_f32(operation, CSM_EXACT, x, expected, outer, n, inner, &options)
                                 : csm_reduce_options_f64(operation, CSM_EXACT, x, expected, outer, n, inner, &options);
                csm_set_isa(isa);
                status |= dtype == DTYPE_F32
                              ? csm_reduce_options_f32(operation, CSM_EXACT, x, y, outer, n, inner, &options)
                              : csm_reduce_options_f64(operation, CSM_EXACT, x, y, outer, n, inner, &options);
                check c;
                check_begin(&c, isa, ENTRY_MASKED, dtype, 0, "op %d (%lld, %lld, %lld), %s, T = %g", operation,
                            (long long)outer, (long long)n, (long long)inner, options.where ? "where" : "no where",
                            temperatures[t]);
                check_condition(&c, status == CSM_OK, "status %d", status);
                for (int64_t i = 0; i < outputs && !c.failed; i++) {
                    const double got = get(y, i, dtype), want = get(expected, i, dtype);
                    const int normal = isfinite(got) && isfinite(want) && fabs(want) >= smallest_normal(dtype);
                    track(&c.worst_scalar, normal ? ulp_distance(got, want, dtype) : 0.0);
                    check_condition(&c, same_output(got, want, dtype), "element %lld: %.17g, scalar kernel %.17g",
                                    (long long)i, got, want);
                    if (options.where && operation != CSM_LOGSUMEXP && !where[i])
                        check_condition(&c, got == (operation == CSM_SOFTMAX ? 0.0 : -INFINITY),
                                        "excluded element %lld gives %.17g", (long long)i, got);
                }
                check_end(&c);
            }
        }
        /* gradients: grad = x with its specials replaced, s the scalar softmax / log_softmax */
        for (int o = 0; o < 2; o++) {
            const int operation = operations[o];
            void *grad = guarded_array(&region_z, elements, dtype);
            for (int64_t i = 0; i < elements; i++)
                set(grad, i, dtype, isfinite(get(x, i, dtype)) ? get(x, i, dtype) / 7 : 0.5);
            const csm_options options = {where, 1.0, 0};
            void *s = malloc((size_t)elements * size);
            void *y = guarded_array(&region_y, elements, dtype);
            if (!s)
                abort();
            csm_set_isa(CSM_ISA_SCALAR);
            if (dtype == DTYPE_F32) {
                csm_reduce_options_f32(operation, CSM_EXACT, x, s, outer, n, inner, &options);
                csm_backward_f32(operation, grad, s, where, expected, outer, n, inner, 0);
                csm_set_isa(isa);
                csm_backward_f32(operation, grad, s, where, y, outer, n, inner, 0);
            } else {
                csm_reduce_options_f64(operation, CSM_EXACT, x, s, outer, n, inner, &options);
                csm_backward_f64(operation, grad, s, where, expected, outer, n, inner, 0);
                csm_set_isa(isa);
                csm_backward_f64(operation, grad, s, where, y, outer, n, inner, 0);
            }
            check c;
            check_begin(&c, isa, ENTRY_BACKWARD, dtype, 0, "op %d (%lld, %lld, %lld)", operation, (long long)outer,
                        (long long)n, (long long)inner);
            for (int64_t i = 0; i < elements && !c.failed; i++) {
                const double got = get(y, i, dtype), want = get(expected, i, dtype);
                /* outputs near 0 cancel (g - sum): compare against the slice's scale */
                const double close = fabs(got - want) <= 1e-5 * (1.0 + fabs(want)) * (dtype == DTYPE_F32 ? 1 : 1e-8);
                check_condition(&c, (isnan(got) && isnan(want)) || got == want || close,
                                "element %lld: %.17g, scalar kernel %.17g", (long long)i, got, want);
            }
            check_end(&c);
            free(s);
        }
        free(where);
        free(expected);
    }
}

/* ------------------------------------------------------------------------- */
/* Report                                                                    */
/* ------------------------------------------------------------------------- */

static void print_summary(int isa)
{
    const isa_summary *s = &summaries[isa];
    printf("\n%s: worst error in ULP against the long double reference [distance to the scalar kernel]\n",
           csm_isa_name(isa));
    printf("  %-22s", "entry point");
    for (int d = 0; d < DTYPE_COUNT; d++)
        for (int p = 0; p < 2; p++) {
            char heading[24];
            snprintf(heading, sizeof heading, "%s %s", dtype_names[d], precision_names[p]);
            printf(" %20s", heading);
        }
    printf("\n");
    for (int e = 0; e < ENTRY_COUNT; e++) {
        printf("  %-22s", entry_names[e]);
        for (int d = 0; d < DTYPE_COUNT; d++)
            for (int p = 0; p < 2; p++) {
                char cell[40];
                const char *mark = s->failed[e][d][p] ? " FAIL" : "";
                if (s->checks[e][d][p] == 0)
                    snprintf(cell, sizeof cell, "-");
                else if (e == ENTRY_REDUCE_THREADS)
                    snprintf(cell, sizeof cell, "%s", s->failed[e][d][p] ? "differ FAIL" : "bitwise equal");
                else
                    snprintf(cell, sizeof cell, "%.2f [%.2f]%s", s->reference[e][d][p], s->scalar[e][d][p], mark);
                printf(" %20s", cell);
            }
        printf("\n");
    }
    printf("  %lld failed checks\n", (long long)s->failures);
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

int main(int argc, char **argv)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a log before any crash */
#ifdef HAVE_GUARD_PAGES
    signal(SIGSEGV, report_crash);
    signal(SIGBUS, report_crash);
#endif
    csm_init();
    region_x = guarded_new(REGION_BYTES);
    region_y = guarded_new(REGION_BYTES);
    region_z = guarded_new(REGION_BYTES);

    /* which ISAs: the ones named on the command line, else all usable here */
    int selected[CSM_ISA_COUNT] = {0};
    for (int isa = 0; isa < CSM_ISA_COUNT; isa++)
        selected[isa] = argc < 2;
    for (int a = 1; a < argc; a++) {
        const int isa = csm_isa_from_name(argv[a]);
        if (isa < 0) {
            fprintf(stderr, "unknown ISA %s\n", argv[a]);
            return 2;
        }
        selected[isa] = 1;
    }
    printf("csoftmax kernel test (%s, OpenMP %s, long double with a %d-bit significand)\n",
#if defined(__aarch64__)
           "aarch64",
#elif defined(__x86_64__)
           "x86-64",
#else
           "other architecture",
#endif
           csm_openmp_enabled() ? "on" : "off", LDBL_MANT_DIG);
    int tested = 0;
    for (int isa = 0; isa < CSM_ISA_COUNT; isa++) {
        if (!selected[isa])
            continue;
        if (!csm_isa_available(isa)) {
            printf("  %-7s skipped: not compiled for this architecture or not supported by this CPU\n",
                   csm_isa_name(isa));
            selected[isa] = 0;
            if (argc >= 2) {
                printf("FAIL %s was asked for but is not usable here\n", csm_isa_name(isa));
                checks_failed++;
            }
            continue;
        }
        printf("  %-7s tested\n", csm_isa_name(isa));
        tested++;
    }
    fflush(stdout);

    for (int d = 0; d < DTYPE_COUNT; d++) {
        const test_dtype dtype = (test_dtype)d;
        for (int index = 0; index < SIZE_COUNT; index++)
            for (int p = 0; p < PATTERN_COUNT; p++)
                test_row_init(&rows[d][index][p], (row_pattern)p, dtype, size_at(index), (uint64_t)index);
        make_long_rows(dtype);
    }
    printf("references ready after %.1f s\n", seconds_since(&start));
    fflush(stdout);

    for (int isa = 0; isa < CSM_ISA_COUNT; isa++) {
        if (!selected[isa])
            continue;
        csm_set_isa(isa);
        const csm_kernel_table *k = csm_current_kernels();
        summaries[isa].tested = 1;
        for (int d = 0; d < DTYPE_COUNT; d++) {
            for (int index = 0; index < SIZE_COUNT; index++) {
                test_row *group = rows[d][index];
                for (int precision = 0; precision < 2; precision++) {
                    for (int p = 0; p < PATTERN_COUNT; p++)
                        test_row_kernels(isa, k, &group[p], precision);
                    if (group[0].n <= COLUMN_SIZE_LIMIT)
                        test_columns(isa, k, group, precision);
                    test_rows(isa, k, group, precision);
                }
            }
            test_reduce(isa, (test_dtype)d);
            test_masked(isa, (test_dtype)d);
            if (csm_openmp_enabled())
                test_thread_determinism(isa, (test_dtype)d);
        }
        printf("%s done after %.1f s\n", csm_isa_name(isa), seconds_since(&start));
        fflush(stdout);
    }

    for (int isa = 0; isa < CSM_ISA_COUNT; isa++)
        if (summaries[isa].tested)
            print_summary(isa);
    for (int d = 0; d < DTYPE_COUNT; d++) {
        for (int index = 0; index < SIZE_COUNT; index++)
            for (int p = 0; p < PATTERN_COUNT; p++)
                test_row_free(&rows[d][index][p]);
        for (int i = 0; i <= LONG_ROW_COUNT; i++)
            test_row_free(&long_row_data[d][i]);
    }
    if (tested == 0) {
        printf("FAIL no ISA tested\n");
        checks_failed++;
    }
    printf("\n%.1f s; %lld passed, %lld failed\n", seconds_since(&start), (long long)checks_passed,
           (long long)checks_failed);
    return checks_failed ? 1 : 0;
}
