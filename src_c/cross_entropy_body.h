/* Cross-entropy for one element type, included by cross_entropy.c with
 * ELEMENT and SUFFIX defined.  Rows (inner == 1) are read in place; for
 * inner > 1, tiles of columns are transposed into contiguous rows in a
 * per-thread buffer (and their gradients back), so every row runs the same
 * contiguous kernels. */

#define CE_FN_(name, suffix) name##_##suffix
#define CE_FN2(name, suffix) CE_FN_(name, suffix)
#define CE_FN(name) CE_FN2(name, SUFFIX)
#define KERNEL_FN_(name, suffix) name##_##suffix
#define KERNEL_FN2(name, suffix) KERNEL_FN_(name, suffix)
#define KERNEL_FN(table, name) (table)->KERNEL_FN2(name, SUFFIX)

static void CE_FN(fill)(ELEMENT *y, int64_t n, ELEMENT value)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = value;
}

/* grad -= factor * a, with a the row's weighted target distribution (grad
 * holds factor * A * softmax). */
static void CE_FN(subtract_target)(const csm_cross_entropy *ce, const ELEMENT *q, int64_t target, double target_weight,
                                   ELEMENT *grad)
{
    const int64_t n = ce->n;
    const double factor = ce->grad_factor, keep = 1.0 - ce->smoothing;
    if (q) {
        for (int64_t c = 0; c < n; c++) {
            const double share = ((double)q[c] * keep + ce->smoothing_class) * (ce->weight ? ce->weight[c] : 1.0);
            grad[c] = (ELEMENT)((double)grad[c] - factor * share);
        }
        return;
    }
    if (ce->smoothing > 0.0) {
        const double uniform = factor * ce->smoothing_class;
        for (int64_t c = 0; c < n; c++)
            grad[c] = (ELEMENT)((double)grad[c] - uniform * (ce->weight ? ce->weight[c] : 1.0));
    }
    grad[target] = (ELEMENT)((double)grad[target] - factor * keep * target_weight);
}

/* grad = factor * (A * softmax - a): the kernel's softmax output pass with
 * its 1 / sum scaled by factor * A, then the correction. */
static void CE_FN(row_grad)(const csm_cross_entropy *ce, const ELEMENT *x, const ELEMENT *q, int64_t target,
                            double target_weight, double mass, const csm_partial *partial, ELEMENT *grad)
{
    const double scaled = ce->grad_factor * mass;
    csm_row_scale scale;
    csm_row_scale_from_partials(partial, 1, CSM_SOFTMAX, NULL, &scale);
    scale.inverse_hi *= scaled;
    scale.inverse_lo = scale.inverse_lo == 0.0 ? 0.0 : scale.inverse_lo * scaled;
    KERNEL_FN(ce->kernels, finish)(x, NULL, grad, ce->n, CSM_SOFTMAX, CSM_EXACT, NULL, &scale);
    CE_FN(subtract_target)(ce, q, target, target_weight, grad);
}

/* One contiguous row of n > 0 logits: its loss, and its gradient when grad
 * is not NULL.  q: the row's probability targets, or NULL for the class
 * index `target`. */
static double CE_FN(row)(const csm_cross_entropy *ce, const ELEMENT *x, const ELEMENT *q, int64_t target, ELEMENT *grad)
{
    const int64_t n = ce->n;
    if (!q && target == ce->ignore_index) {
        if (grad)
            CE_FN(fill)(grad, n, (ELEMENT)0);
        return 0.0;
    }
    csm_partial partial;
    csm_row_scale scale;
    CE_FN(csm_partial_of)(ce->kernels, x, NULL, NULL, n, CSM_EXACT, NULL, &partial);
    if (csm_row_scale_from_partials(&partial, 1, CSM_LOG_SOFTMAX, NULL, &scale) != CSM_ROW_FINITE) {
        /* NaN, +inf or only -inf: log_softmax is NaN throughout, so is the loss */
        if (grad)
            CE_FN(fill)(grad, n, (ELEMENT)NAN);
        return NAN;
    }
    const double row_max = scale.max, keep = 1.0 - ce->smoothing;
    double distance, mass, target_weight = 0.0;
    if (q) {
        compensated_sum distances = {0.0, 0.0}, masses = {0.0, 0.0};
        for (int64_t c = 0; c < n; c++) {
            const double share = ((double)q[c] * keep + ce->smoothing_class) * (ce->weight ? ce->weight[c] : 1.0);
            compensated_add(&distances, share * (row_max - (double)x[c]));
            compensated_add(&masses, share);
        }
        distance = compensated_value(&distances);
        mass = compensated_value(&masses);
    } else {
        target_weight = ce->weight ? ce->weight[target] : 1.0;
        distance = target_weight * (row_max - (double)x[target]);
        mass = target_weight;
        if (ce->smoothing > 0.0) {
            compensated_sum distances = {0.0, 0.0};
            for (int64_t c = 0; c < n; c++)
                compensated_add(&distances, (ce->weight ? ce->weight[c] : 1.0) * (row_max - (double)x[c]));
            distance = keep * distance + ce->smoothing_class * compensated_value(&distances);
            mass = keep * target_weight + ce->smoothing_class * ce->weight_total;
        }
    }
    if (grad)
        CE_FN(row_grad)(ce, x, q, target, target_weight, mass, &partial, grad);
    return distance + mass * scale.log_sum;
}

/* A short row's loss from its log_softmax (all <= 0, so no term cancels);
 * with grad, which then holds the row's softmax, its gradient. */
static double CE_FN(short_row)(const csm_cross_entropy *ce, const ELEMENT *log_softmax, const ELEMENT *q,
                               int64_t target, ELEMENT *grad)
{
    const int64_t n = ce->n;
    if (!q && target == ce->ignore_index) {
        if (grad)
            CE_FN(fill)(grad, n, (ELEMENT)0);
        return 0.0;
    }
    const double keep = 1.0 - ce->smoothing;
    double loss, mass, target_weight = 0.0;
    if (q) {
        compensated_sum losses = {0.0, 0.0}, masses = {0.0, 0.0};
        for (int64_t c = 0; c < n; c++) {
            const double share = ((double)q[c] * keep + ce->smoothing_class) * (ce->weight ? ce->weight[c] : 1.0);
            compensated_add(&losses, share * -(double)log_softmax[c]);
            compensated_add(&masses, share);
        }
        loss = compensated_value(&losses);
        mass = compensated_value(&masses);
    } else {
        target_weight = ce->weight ? ce->weight[target] : 1.0;
        loss = target_weight * -(double)log_softmax[target];
        mass = target_weight;
        if (ce->smoothing > 0.0) {
            compensated_sum losses = {0.0, 0.0};
            for (int64_t c = 0; c < n; c++)
                compensated_add(&losses, (ce->weight ? ce->weight[c] : 1.0) * -(double)log_softmax[c]);
            loss = keep * loss + ce->smoothing_class * compensated_value(&losses);
            mass = keep * target_weight + ce->smoothing_class * ce->weight_total;
        }
    }
    if (grad) {
        const double scaled = ce->grad_factor * mass;
        for (int64_t c = 0; c < n; c++)
            grad[c] = (ELEMENT)(scaled * (double)grad[c]);
        CE_FN(subtract_target)(ce, q, target, target_weight, grad);
    }
    return loss;
}

/* `count` contiguous rows: logits x, probability targets q (or NULL), class
 * indices targets (or NULL), their losses, and grad (or NULL).  Rows of at
 * most SHORT_CLASSES classes go through the row-tile kernel, one call per
 * tile of rows (not per row), which writes their log_softmax into a buffer
 * that stays in L1 and their softmax into grad. */
static void CE_FN(block)(const csm_cross_entropy *ce, const ELEMENT *x, const ELEMENT *q, const int64_t *targets,
                         double *losses, ELEMENT *grad, int64_t count)
{
    const int64_t n = ce->n;
    if (!(KERNEL_FN(ce->kernels, rows) && n <= ce->kernels->short_row_limit && n <= SHORT_CLASSES)) {
        for (int64_t j = 0; j < count; j++)
            losses[j] =
                CE_FN(row)(ce, x + j * n, q ? q + j * n : NULL, targets ? targets[j] : 0, grad ? grad + j * n : NULL);
        return;
    }
    ELEMENT log_softmax[SHORT_TILE_ROWS * SHORT_CLASSES];
    for (int64_t first = 0; first < count; first += SHORT_TILE_ROWS) {
        const int64_t rows = count - first < SHORT_TILE_ROWS ? count - first : SHORT_TILE_ROWS;
        KERNEL_FN(ce->kernels, rows)(x + first * n, NULL, log_softmax, rows, n, CSM_LOG_SOFTMAX, CSM_EXACT, NULL);
        if (grad)
            KERNEL_FN(ce->kernels, rows)(x + first * n, NULL, grad + first * n, rows, n, CSM_SOFTMAX, CSM_EXACT, NULL);
        for (int64_t j = first; j < first + rows; j++)
            losses[j] = CE_FN(short_row)(ce, log_softmax + (j - first) * n, q ? q + j * n : NULL,
                                         targets ? targets[j] : 0, grad ? grad + j * n : NULL);
    }
}

/* (rows, n) tile of buffer <- the (n, columns) columns of a slab, rows `inner` apart. */
static void CE_FN(gather)(const ELEMENT *slab, ELEMENT *buffer, int64_t n, int64_t inner, int64_t columns)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < columns; j++)
            buffer[j * n + i] = slab[i * inner + j];
}

static void CE_FN(scatter)(const ELEMENT *buffer, ELEMENT *slab, int64_t n, int64_t inner, int64_t columns)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < columns; j++)
            slab[i * inner + j] = buffer[j * n + i];
}

/* One tile of up to tile_columns columns of one slab (inner > 1). */
static void CE_FN(tile)(const csm_cross_entropy *ce, const ELEMENT *x, const ELEMENT *probability, double *losses,
                        ELEMENT *grad, int64_t item, int64_t tiles, int64_t tile_columns, ELEMENT *buffer)
{
    const int64_t n = ce->n, inner = ce->inner;
    const int64_t slab = item / tiles, first = (item % tiles) * tile_columns;
    const int64_t columns = inner - first < tile_columns ? inner - first : tile_columns;
    const int64_t offset = slab * n * inner + first;
    ELEMENT *rows_x = buffer, *rows_q = buffer + tile_columns * n;
    ELEMENT *rows_grad = rows_q + (probability ? tile_columns * n : 0);
    CE_FN(gather)(x + offset, rows_x, n, inner, columns);
    if (probability)
        CE_FN(gather)(probability + offset, rows_q, n, inner, columns);
    const int64_t row = slab * inner + first;
    CE_FN(block)(ce, rows_x, probability ? rows_q : NULL, ce->target ? ce->target + row : NULL, losses + row,
                 grad ? rows_grad : NULL, columns);
    if (grad)
        CE_FN(scatter)(rows_grad, grad + offset, n, inner, columns);
}

static int CE_FN(columns)(const csm_cross_entropy *ce, const ELEMENT *x, const ELEMENT *probability, double *losses,
                          ELEMENT *grad)
{
    const int64_t n = ce->n;
    int64_t tile_columns = TILE_BYTES / (n * (int64_t)sizeof(ELEMENT));
    tile_columns = tile_columns < 1 ? 1 : tile_columns > TILE_COLUMNS ? TILE_COLUMNS : tile_columns;
    const int64_t tiles = (ce->inner + tile_columns - 1) / tile_columns, items = ce->outer * tiles;
    const int threads = csm_threads_for(ce->outer * n * ce->inner, items, 0);
    const int64_t buffer_elements = tile_columns * n * (1 + (probability != NULL) + (grad != NULL));
    ELEMENT *buffers = (ELEMENT *)malloc((size_t)(threads * buffer_elements) * sizeof(ELEMENT));
    if (!buffers)
        return CSM_ERROR_NO_MEMORY;
    csm_work slots = {0, threads, 1}; /* each thread takes one buffer */
    csm_work work = csm_work_for(items, threads, 1);
    CSM_PARALLEL(threads, {
        int64_t slot = 0, unused, begin, end;
        csm_work_take(&slots, &slot, &unused); /* never fails: one take per thread */
        ELEMENT *buffer = buffers + slot * buffer_elements;
        while (csm_work_take(&work, &begin, &end))
            for (int64_t item = begin; item < end; item++)
                CE_FN(tile)(ce, x, probability, losses, grad, item, tiles, tile_columns, buffer);
    });
    free(buffers);
    return CSM_OK;
}

int CE_FN(csm_cross_entropy)(const ELEMENT *x, const ELEMENT *probability, int64_t outer, int64_t n, int64_t inner,
                             const csm_cross_entropy_options *options, double *losses, double *loss, ELEMENT *grad)
{
    csm_cross_entropy ce;
    double denominator;
    int status = prepare(&ce, outer, n, inner, probability != NULL, options, &denominator);
    if (status != CSM_OK)
        return status;
    const int64_t rows = outer * inner;
    if (n == 0) {
        /* only ignored rows (class indices) or sums over no class */
        for (int64_t row = 0; row < rows; row++)
            losses[row] = 0.0;
    } else if (inner == 1) {
        const int threads = csm_threads_for(rows * n, rows, 0);
        csm_work work = csm_work_for(rows, threads, 1);
        CSM_PARALLEL(threads, {
            int64_t begin, end;
            while (csm_work_take(&work, &begin, &end))
                CE_FN(block)(&ce, x + begin * n, probability ? probability + begin * n : NULL,
                             ce.target ? ce.target + begin : NULL, losses + begin, grad ? grad + begin * n : NULL,
                             end - begin);
        });
    } else if (rows > 0) {
        status = CE_FN(columns)(&ce, x, probability, losses, grad);
        if (status != CSM_OK)
            return status;
    }
    *loss = reduce_losses(losses, rows, options->reduction, denominator);
    return CSM_OK;
}

#undef CE_FN
#undef CE_FN2
#undef CE_FN_
#undef KERNEL_FN
#undef KERNEL_FN2
#undef KERNEL_FN_
