/* The long double reference of tests/c/test_kernels.c and the error measures
 * it is compared with.  Independent of the kernels' algorithms: plain loops,
 * expl/log1pl, x - max carried exactly as a TwoSum pair, compensated sums.
 * long double is x87 extended (64-bit mantissa) on x86-64 Linux and IEEE quad
 * on aarch64 Linux, both far more precise than the float64 results checked. */
#ifndef CSM_TEST_REFERENCE_H
#define CSM_TEST_REFERENCE_H

#include <stdint.h>

#include "kernels/kernel_table.h"

typedef enum {
    DTYPE_F32 = 0,
    DTYPE_F64 = 1,
    DTYPE_COUNT = 2
} test_dtype;

/* A reference value as an unevaluated sum hi + lo of doubles (about 106
 * bits): checking against it needs double arithmetic only, which matters
 * under emulation, where long double (quad on aarch64) is slow software. */
typedef struct {
    double hi, lo;
} reference_value;

/* The exact results for one row (one reduced slice). */
typedef struct {
    int64_t n;
    csm_row_state state; /* what a masked partial reports: NaN > +inf > only -inf > finite */
    long double max;
    long double count;         /* elements equal to max */
    long double rest;          /* sum of exp(x - max) over the other elements */
    long double log_sum;       /* log(count + rest) */
    reference_value logsumexp; /* the contract's value, special rows included */
    double spread;             /* W = sum_j p_j |x_j - max|: relative error of a classical row sum in units of u */
    double rest_spread;        /* the same, weighted over the non-maximal terms only */
    reference_value *exp_term; /* exp(x_i - max): what a storing partial writes (NaN for special rows) */
    reference_value *softmax;  /* NaN rows for every special state */
    reference_value *log_softmax;
    double *distance; /* |x_i - max| (0 for special rows) */
} reference_row;

/* x holds values exactly representable in the row's dtype. */
void reference_compute(const double *x, int64_t n, reference_row *row);
void reference_free(reference_row *row);

/* Unit roundoff u and machine epsilon 2u of a dtype; smallest normal. */
double unit_roundoff(test_dtype dtype);
double smallest_normal(test_dtype dtype);

/* Error of `computed` in ULPs of the dtype, measured at the reference rounded
 * to the dtype (numpy.spacing).  0 for a reference below the normal range
 * when computed lies in [0, tiny] with its sign ("may flush to 0"); infinity
 * for a mismatch of NaN or infinities. */
double ulp_error(reference_value reference, double computed, test_dtype dtype);
/* The spacing ulp_error divides by (for converting absolute slack to ULPs). */
double reference_spacing(double reference, test_dtype dtype);
/* Distance in representable values of the dtype between two results (0 for
 * two NaNs or equal values, infinity for a NaN against a number). */
double ulp_distance(double a, double b, test_dtype dtype);

#endif /* CSM_TEST_REFERENCE_H */
