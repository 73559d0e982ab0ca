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

/* x - max as hi + lo: exact in exact mode, rounded to ELEMENT in fast mode.
 * With a temperature the pair is then multiplied by 1/T (a double-double):
 * exact mode keeps the product's rounding error (Dekker) in lo. */
static double SCALAR_FN(difference)(ELEMENT x, double row_max, int exact, const csm_temperature *temperature,
                                    double *lo)
{
    if (!exact) {
        *lo = 0.0;
        double d = (double)(ELEMENT)((double)x - row_max);
        return temperature ? (double)(ELEMENT)(d * temperature->inverse_hi) : d;
    }
    double big = (double)x < -row_max ? (double)x : -row_max;
    double small = (double)x < -row_max ? -row_max : (double)x;
    double hi = big + small;
    *lo = isinf(hi) ? 0.0 : small - (hi - big);
    if (temperature && isfinite(hi)) {
        const double split = 134217729.0; /* 2^27 + 1 */
        const double inverse = temperature->inverse_hi;
        double p = hi * inverse;
        if (isinf(p) || fabs(hi) > 0x1p995) { /* far outside exp's range: lo no longer matters */
            *lo = 0.0;
            return p;
        }
        double ch = split * hi, ci = split * inverse;
        double h1 = ch - (ch - hi), h2 = hi - h1, i1 = ci - (ci - inverse), i2 = inverse - i1;
        double error = ((h1 * i1 - p) + h1 * i2 + h2 * i1) + h2 * i2;
        *lo = error + hi * temperature->inverse_lo + *lo * inverse;
        return p;
    }
    if (temperature && isinf(hi) && !isinf((double)x)) /* x - M overflowed; (x - M) / T may not */
        return (double)x * temperature->inverse_hi - row_max * temperature->inverse_hi;
    if (temperature)
        hi *= temperature->inverse_hi;
    return hi;
}

static double SCALAR_FN(exp_minus_max)(ELEMENT x, double row_max, int exact, const csm_temperature *temperature)
{
    double lo;
    double e = exp(SCALAR_FN(difference)(x, row_max, exact, temperature, &lo));
    return e + e * lo;
}

/* Excluded elements read as -inf. */
static ELEMENT SCALAR_FN(load)(const ELEMENT *x, const uint8_t *where, int64_t i)
{
    return !where || where[i] ? x[i] : (ELEMENT)-INFINITY;
}

static void SCALAR_FN(mask)(const ELEMENT *x, const uint8_t *where, ELEMENT *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = SCALAR_FN(load)(x, where, i);
}

static ELEMENT SCALAR_FN(max)(const ELEMENT *x, const uint8_t *where, int64_t n)
{
    ELEMENT row_max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (SCALAR_FN(load)(x, where, i) > row_max)
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
static void SCALAR_FN(partial)(const ELEMENT *x, const uint8_t *where, ELEMENT *y, int64_t n, ELEMENT row_max,
                               int precision, const csm_temperature *temperature, csm_partial *partial)
{
    const int exact = precision == CSM_EXACT;
    if (y && row_max == -INFINITY) {
        /* only -inf (and NaN): nothing finite to store against, and y may be x */
        SCALAR_FN(partial)(x, where, NULL, n, row_max, precision, temperature, partial);
        for (int64_t i = 0; i < n; i++)
            y[i] = 0;
        return;
    }
    /* fast mode sums every term of a finite row unmasked (kernel_table.h) */
    const int counted = !y && (exact || !isfinite(row_max));
    double sum = 0.0, compensation = 0.0, maxima = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const ELEMENT value = SCALAR_FN(load)(x, where, i);
        double e = SCALAR_FN(exp_minus_max)(value, row_max, exact, temperature);
        if (y) {
            y[i] = (ELEMENT)e;
        } else if (counted && value == row_max) {
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

static ELEMENT SCALAR_FN(log_softmax)(ELEMENT x, const csm_row_scale *scale, int exact,
                                      const csm_temperature *temperature)
{
    double lo;
    double hi = SCALAR_FN(difference)(x, scale->max, exact, temperature, &lo);
    return (ELEMENT)((hi - scale->log_sum) + lo);
}

static void SCALAR_FN(finish)(const ELEMENT *x, const uint8_t *where, ELEMENT *y, int64_t n, int operation,
                              int precision, const csm_temperature *temperature, const csm_row_scale *scale)
{
    const int exact = precision == CSM_EXACT;
    for (int64_t i = 0; i < n; i++) {
        const ELEMENT value = SCALAR_FN(load)(x, where, i);
        if (operation == CSM_SOFTMAX)
            y[i] = SCALAR_FN(scaled)(SCALAR_FN(exp_minus_max)(value, scale->max, exact, temperature), scale, exact);
        else
            y[i] = SCALAR_FN(log_softmax)(value, scale, exact, temperature);
    }
}

/* A tile of columns: per-column accumulators, rows walked in order. */
static void SCALAR_FN(columns)(const ELEMENT *x, const uint8_t *where, ELEMENT *y, int64_t n, int64_t inner,
                               int64_t columns, int operation, int precision, const csm_temperature *temperature)
{
    const int exact = precision == CSM_EXACT;
    const int store = operation == CSM_SOFTMAX;
    csm_partial partials[SCALAR_COLUMN_TILE];
    double compensation[SCALAR_COLUMN_TILE];
    csm_row_state states[SCALAR_COLUMN_TILE];
    for (int64_t j = 0; j < columns; j++) {
        partials[j].max = -INFINITY;
        partials[j].count = partials[j].rest_hi = partials[j].rest_lo = compensation[j] = 0.0;
    }
    /* pass 1: maxima */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < columns; j++) {
            const ELEMENT value = SCALAR_FN(load)(x, where, i * inner + j);
            if (value > partials[j].max)
                partials[j].max = value;
        }
    /* pass 2: exp and sums */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < columns; j++) {
            const ELEMENT value = SCALAR_FN(load)(x, where, i * inner + j);
            double e = SCALAR_FN(exp_minus_max)(value, partials[j].max, exact, temperature);
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
        if (store && partials[j].max == -INFINITY)
            partials[j].count = 0.0; /* only -inf or nothing included: the stored terms are not a partial */
        states[j] = csm_row_scale_from_partials(&partials[j], 1, operation, temperature, &scales[j]);
        if (operation == CSM_LOGSUMEXP)
            y[j] = (ELEMENT)csm_logsumexp_from_state(states[j], &scales[j]);
    }
    if (operation == CSM_LOGSUMEXP)
        return;
    const ELEMENT excluded = store ? (ELEMENT)0 : (ELEMENT)-INFINITY;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < columns; j++) {
            const int64_t at = i * inner + j;
            if (states[j] != CSM_ROW_FINITE)
                y[at] = !where || where[at] ? (ELEMENT)NAN : excluded;
            else if (store)
                y[at] = SCALAR_FN(scaled)(y[at], &scales[j], exact);
            else
                y[at] = SCALAR_FN(log_softmax)(SCALAR_FN(load)(x, where, at), &scales[j], exact, temperature);
        }
    }
}

/* Gradients (kernel_table.h): per slice, a Kahan sum in double over the
 * included elements, then each output formed in double.  A slice has n
 * elements `stride` apart. */
static void SCALAR_FN(backward_slice)(const ELEMENT *g, const ELEMENT *s, const uint8_t *where, ELEMENT *out, int64_t n,
                                      int64_t stride, int softmax)
{
    double sum = 0.0, compensation = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t at = i * stride;
        if (!where || where[at])
            SCALAR_FN(kahan_add)(&sum, &compensation, softmax ? (double)g[at] * (double)s[at] : (double)g[at]);
    }
    sum -= compensation;
    for (int64_t i = 0; i < n; i++) {
        const int64_t at = i * stride;
        if (where && !where[at])
            out[at] = 0;
        else if (softmax)
            out[at] = (ELEMENT)((double)s[at] * ((double)g[at] - sum));
        else
            out[at] = (ELEMENT)((double)g[at] - exp((double)s[at]) * sum);
    }
}

static void SCALAR_FN(backward)(const ELEMENT *g, const ELEMENT *s, const uint8_t *where, ELEMENT *out, int64_t n,
                                int64_t inner, int64_t columns, int operation)
{
    const int softmax = operation == CSM_SOFTMAX;
    /* inner == 1: `columns` rows of n, a slice each; else columns `inner` apart */
    const int64_t step = inner == 1 ? n : 1, stride = inner == 1 ? 1 : inner;
    for (int64_t j = 0; j < columns; j++)
        SCALAR_FN(backward_slice)(g + j * step, s + j * step, where ? where + j * step : NULL, out + j * step, n,
                                  stride, softmax);
}

#undef SCALAR_FN
#undef SCALAR_FN2
#undef SCALAR_FN_
