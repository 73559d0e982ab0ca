/* Portable kernels for one element type, included by scalar.c once per type
 * with ELEMENT (float or double) and SUFFIX (f32 or f64) defined.
 *
 * This is the C-level reference: plain loops, everything computed in double
 * with the C library's exp/log1p, x - max carried exactly (Fast2Sum), Kahan
 * sums.  float32 results are rounded once from double; float64 ones carry
 * the Fast2Sum low part into exp and log_softmax.  Fast mode rounds x - max
 * to the element type first (the classical algorithm). */

#define SCALAR_FN_(name, suffix) name##_##suffix##_scalar
#define SCALAR_FN2(name, suffix) SCALAR_FN_(name, suffix)
#define SCALAR_FN(name) SCALAR_FN2(name, SUFFIX)

/* x - max as hi + lo: exact in exact mode, rounded to ELEMENT in fast mode. */
static double SCALAR_FN(difference)(ELEMENT x, double row_max, int exact, double *lo)
{
    if (!exact) {
        *lo = 0.0;
        return (double)(ELEMENT)((double)x - row_max);
    }
    double big = (double)x < -row_max ? (double)x : -row_max;
    double small = (double)x < -row_max ? -row_max : (double)x;
    double hi = big + small;
    *lo = isinf(hi) ? 0.0 : small - (hi - big);
    return hi;
}

static double SCALAR_FN(exp_minus_max)(ELEMENT x, double row_max, int exact)
{
    double lo;
    double e = exp(SCALAR_FN(difference)(x, row_max, exact, &lo));
    return e + e * lo;
}

static double SCALAR_FN(max)(const ELEMENT *x, int64_t n)
{
    double row_max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > row_max)
            row_max = x[i];
    return row_max;
}

static void SCALAR_FN(kahan_add)(double *sum, double *compensation, double term)
{
    double y = term - *compensation;
    double t = *sum + y;
    *compensation = (t - *sum) - y;
    *sum = t;
}

/* A NaN x gives a NaN term (exp(NaN)), which the driver turns into a NaN row. */
static void SCALAR_FN(partial)(const ELEMENT *x, ELEMENT *y, int64_t n, int precision, csm_partial *partial)
{
    const int exact = precision == CSM_EXACT;
    const double row_max = SCALAR_FN(max)(x, n);
    if (y && row_max == -INFINITY) {
        /* only -inf (and NaN): nothing finite to store against, and y may be x */
        SCALAR_FN(partial)(x, NULL, n, precision, partial);
        for (int64_t i = 0; i < n; i++)
            y[i] = 0;
        return;
    }
    double sum = 0.0, compensation = 0.0, maxima = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = SCALAR_FN(exp_minus_max)(x[i], row_max, exact);
        if (y) {
            y[i] = (ELEMENT)e;
        } else if (x[i] == row_max) {
            maxima += 1.0;
            continue;
        }
        SCALAR_FN(kahan_add)(&sum, &compensation, e);
    }
    partial->max = row_max;
    partial->count = maxima;
    partial->rest_hi = sum - compensation;
    partial->rest_lo = -(compensation + (partial->rest_hi - sum));
}

static ELEMENT SCALAR_FN(scaled)(double e, const csm_row_scale *scale, int exact)
{
    return exact ? (ELEMENT)(e * scale->inverse_hi + e * scale->inverse_lo) : (ELEMENT)(e * scale->inverse_hi);
}

static void SCALAR_FN(scale)(ELEMENT *y, int64_t n, int precision, const csm_row_scale *scale)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = SCALAR_FN(scaled)(y[i], scale, precision == CSM_EXACT);
}

static ELEMENT SCALAR_FN(log_softmax)(ELEMENT x, const csm_row_scale *scale, int exact)
{
    double lo;
    double hi = SCALAR_FN(difference)(x, scale->max, exact, &lo);
    return (ELEMENT)((hi - scale->log_sum) + lo);
}

static void SCALAR_FN(finish)(const ELEMENT *x, ELEMENT *y, int64_t n, int operation, int precision,
                              const csm_row_scale *scale)
{
    const int exact = precision == CSM_EXACT;
    for (int64_t i = 0; i < n; i++) {
        if (operation == CSM_SOFTMAX)
            y[i] = SCALAR_FN(scaled)(SCALAR_FN(exp_minus_max)(x[i], scale->max, exact), scale, exact);
        else
            y[i] = SCALAR_FN(log_softmax)(x[i], scale, exact);
    }
}

/* A tile of columns: per-column accumulators, rows walked in order. */
static void SCALAR_FN(columns)(const ELEMENT *x, ELEMENT *y, int64_t n, int64_t inner, int64_t columns,
                               int operation, int precision)
{
    const int exact = precision == CSM_EXACT;
    const int store = operation == CSM_SOFTMAX;
    csm_partial partials[SCALAR_COLUMN_TILE];
    double compensation[SCALAR_COLUMN_TILE];
    for (int64_t j = 0; j < columns; j++) {
        partials[j].max = -INFINITY;
        partials[j].count = partials[j].rest_hi = partials[j].rest_lo = compensation[j] = 0.0;
    }
    /* pass 1: maxima */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < columns; j++)
            if (x[i * inner + j] > partials[j].max)
                partials[j].max = x[i * inner + j];
    /* pass 2: exp and sums */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < columns; j++) {
            const ELEMENT value = x[i * inner + j];
            double e = SCALAR_FN(exp_minus_max)(value, partials[j].max, exact);
            if (store) {
                y[i * inner + j] = (ELEMENT)e;
            } else if (value == partials[j].max) {
                partials[j].count += 1.0;
                continue;
            }
            SCALAR_FN(kahan_add)(&partials[j].rest_hi, &compensation[j], e);
        }
    }
    /* pass 3: outputs */
    csm_row_scale scales[SCALAR_COLUMN_TILE];
    for (int64_t j = 0; j < columns; j++) {
        double sum = partials[j].rest_hi;
        partials[j].rest_hi = sum - compensation[j];
        partials[j].rest_lo = -(compensation[j] + (partials[j].rest_hi - sum));
        csm_row_state state = csm_row_scale_from_partials(&partials[j], 1, operation, &scales[j]);
        if (operation == CSM_LOGSUMEXP)
            y[j] = (ELEMENT)csm_logsumexp_from_state(state, &scales[j]);
        else if (state != CSM_ROW_FINITE)
            scales[j].max = scales[j].inverse_hi = scales[j].inverse_lo = scales[j].log_sum = NAN;
    }
    if (operation == CSM_LOGSUMEXP)
        return;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < columns; j++) {
            if (store)
                y[i * inner + j] = SCALAR_FN(scaled)(y[i * inner + j], &scales[j], exact);
            else
                y[i * inner + j] = SCALAR_FN(log_softmax)(x[i * inner + j], &scales[j], exact);
        }
    }
}

#undef SCALAR_FN
#undef SCALAR_FN2
#undef SCALAR_FN_
