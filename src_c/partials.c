/* Reductions whose axis is cut into parts held apart (csoftmax.dask's chunks):
 * per-part slice partials, their exact combine in part order, and the output
 * pass of each part from the combined scale -- see csoftmax.h, "Partials
 * across parts".  Built on the kernel table in use and on row_scale.c, so
 * every ISA and the in-memory driver's combine are what runs.  Serial: the
 * caller (a dask task) is the unit of parallelism.  The per-type code is
 * partials_body.h. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "csoftmax.h"
#include "dispatch.h"

/* As driver.c: a row is reduced in BLOCK_BYTES blocks (one L1-sized load feeds
 * the kernel's max and exp-sum passes).  Column slices (inner > 1) are moved
 * TILE_COLUMNS at a time into a BLOCK_BYTES buffer, one row per column, so the
 * row kernels run on them. */
#define BLOCK_BYTES (32 * 1024)
#define TILE_COLUMNS 16

/* The documented record layouts are these structs. */
typedef char partial_is_four_doubles[sizeof(csm_partial) == CSM_PARTIAL_DOUBLES * sizeof(double) ? 1 : -1];

enum {
    SCALE_STATE = 0,
    SCALE_MAX = 1,
    SCALE_INVERSE_HI = 2,
    SCALE_INVERSE_LO = 3,
    SCALE_LOG_SUM = 4
};

static csm_row_state scale_from_record(const double *record, csm_row_scale *scale)
{
    scale->max = record[SCALE_MAX];
    scale->inverse_hi = record[SCALE_INVERSE_HI];
    scale->inverse_lo = record[SCALE_INVERSE_LO];
    scale->log_sum = record[SCALE_LOG_SUM];
    return (csm_row_state)record[SCALE_STATE];
}

static int temperature_valid(double temperature) { return temperature > 0.0 && temperature <= DBL_MAX; }

#define ELEMENT float
#define SUFFIX f32
#include "partials_body.h"
#undef ELEMENT
#undef SUFFIX

#define ELEMENT double
#define SUFFIX f64
#include "partials_body.h"
#undef ELEMENT
#undef SUFFIX

int csm_combine_partials(csm_operation operation, const double *partials, int64_t parts, int64_t slices,
                         double temperature, double *scales)
{
    if (parts < 0 || slices < 0 || !temperature_valid(temperature) ||
        (operation != CSM_SOFTMAX && operation != CSM_LOG_SOFTMAX && operation != CSM_LOGSUMEXP))
        return CSM_ERROR_BAD_ARGUMENT;
    const csm_partial *records = (const csm_partial *)partials;
    csm_temperature storage;
    const csm_temperature *tempered = csm_temperature_init(&storage, temperature);
    for (int64_t slice = 0; slice < slices; slice++) {
        csm_partial combined;
        csm_row_scale scale = {0.0, 0.0, 0.0, 0.0};
        csm_row_state state = csm_merge_partials(records + slice, parts, slices, tempered, &combined);
        if (state == CSM_ROW_FINITE)
            state = csm_row_scale_from_partials(&combined, 1, operation, tempered, &scale);
        else
            scale.max = combined.max;
        double *record = scales + slice * CSM_SCALE_DOUBLES;
        record[SCALE_STATE] = (double)state;
        record[SCALE_MAX] = scale.max;
        record[SCALE_INVERSE_HI] = scale.inverse_hi;
        record[SCALE_INVERSE_LO] = scale.inverse_lo;
        record[SCALE_LOG_SUM] = scale.log_sum;
    }
    return CSM_OK;
}

int csm_logsumexp_from_scales(const double *scales, int64_t slices, double *values)
{
    if (slices < 0)
        return CSM_ERROR_BAD_ARGUMENT;
    for (int64_t slice = 0; slice < slices; slice++) {
        csm_row_scale scale;
        csm_row_state state = scale_from_record(scales + slice * CSM_SCALE_DOUBLES, &scale);
        values[slice] = csm_logsumexp_from_state(state, &scale);
    }
    return CSM_OK;
}
