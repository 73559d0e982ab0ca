/* The reduction driver's internal entry: csm_reduce_f32/f64 of csoftmax.h
 * plus an element mask, a temperature and a thread cap, for the Cython layer
 * and the other drivers (segments, cross-entropy, partials). */
#ifndef CSM_DRIVER_H
#define CSM_DRIVER_H

#include <stdint.h>

#include "csoftmax.h"

typedef struct {
    const uint8_t *where; /* NULL, or a 0/1 mask laid out like x: 0 leaves the element out */
    double temperature;   /* > 0 and finite: softmax / log_softmax of x / temperature; 1 for none */
    int max_threads;      /* most threads to use; 0: csm_get_num_threads() */
} csm_options;

#define CSM_DEFAULT_OPTIONS {NULL, 1.0, 0}

/* As csm_reduce_f32/f64; results are bitwise identical for every max_threads.
 * logsumexp takes no temperature (CSM_ERROR_BAD_ARGUMENT unless it is 1). */
int csm_reduce_options_f32(csm_operation operation, csm_precision precision, const float *x, float *y,
                           int64_t outer, int64_t n, int64_t inner, const csm_options *options);
int csm_reduce_options_f64(csm_operation operation, csm_precision precision, const double *x, double *y,
                           int64_t outer, int64_t n, int64_t inner, const csm_options *options);

#endif /* CSM_DRIVER_H */
