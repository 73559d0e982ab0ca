/* partials.c for one element type, included with ELEMENT and SUFFIX defined. */

#define PARTS_FN_(name, suffix) name##_##suffix
#define PARTS_FN2(name, suffix) PARTS_FN_(name, suffix)
#define PARTS_FN(name) PARTS_FN2(name, SUFFIX)
#define PARTS_KERNEL(table, name) (table)->PARTS_FN2(name, SUFFIX)

/* Elements of a BLOCK_BYTES block, and rows of a TILE_COLUMNS-wide tile of it. */
#define PARTS_BLOCK ((int64_t)(BLOCK_BYTES / sizeof(ELEMENT)))
#define PARTS_TILE_ROWS (PARTS_BLOCK / TILE_COLUMNS)

/* The partial of one contiguous row: its blocks' partials merged in order
 * (`blocks` holds ceil(n / PARTS_BLOCK) records). */
static void PARTS_FN(row_partial)(const csm_kernel_table *kernels, int precision, const ELEMENT *x,
                                  const uint8_t *where, int64_t n, const csm_temperature *temperature,
                                  csm_partial *blocks, csm_partial *partial)
{
    if (n <= PARTS_BLOCK) {
        PARTS_FN(csm_partial_of)(kernels, x, where, NULL, n, precision, temperature, partial);
        return;
    }
    const int64_t count = (n + PARTS_BLOCK - 1) / PARTS_BLOCK;
    for (int64_t b = 0; b < count; b++) {
        const int64_t start = b * PARTS_BLOCK;
        const int64_t length = n - start < PARTS_BLOCK ? n - start : PARTS_BLOCK;
        PARTS_FN(csm_partial_of)(kernels, x + start, where ? where + start : NULL, NULL, length, precision, temperature,
                                 &blocks[b]);
    }
    csm_merge_partials(blocks, count, 1, temperature, partial);
}

/* Rows [start, start + length) of `columns` columns of the (n, inner) slab,
 * one tile row per column: tile[j * PARTS_TILE_ROWS + i] = slab[start + i][j]. */
static void PARTS_FN(gather)(const ELEMENT *slab, int64_t inner, int64_t start, int64_t length, int64_t columns,
                             ELEMENT *tile)
{
    for (int64_t i = 0; i < length; i++) {
        const ELEMENT *row = slab + (start + i) * inner;
        for (int64_t j = 0; j < columns; j++)
            tile[j * PARTS_TILE_ROWS + i] = row[j];
    }
}

static void PARTS_FN(gather_mask)(const uint8_t *slab, int64_t inner, int64_t start, int64_t length, int64_t columns,
                                  uint8_t *tile)
{
    for (int64_t i = 0; i < length; i++) {
        const uint8_t *row = slab + (start + i) * inner;
        for (int64_t j = 0; j < columns; j++)
            tile[j * PARTS_TILE_ROWS + i] = row[j];
    }
}

static void PARTS_FN(scatter)(const ELEMENT *tile, int64_t inner, int64_t start, int64_t length, int64_t columns,
                              ELEMENT *slab)
{
    for (int64_t i = 0; i < length; i++) {
        ELEMENT *row = slab + (start + i) * inner;
        for (int64_t j = 0; j < columns; j++)
            row[j] = tile[j * PARTS_TILE_ROWS + i];
    }
}

/* The partials of `columns` adjacent column slices (x and where point at the
 * first): tiles of PARTS_TILE_ROWS rows, each column's tile partials merged in
 * order (`blocks` holds TILE_COLUMNS * ceil(n / PARTS_TILE_ROWS) records). */
static void PARTS_FN(column_partials)(const csm_kernel_table *kernels, int precision, const ELEMENT *x,
                                      const uint8_t *where, int64_t n, int64_t inner, int64_t columns,
                                      const csm_temperature *temperature, ELEMENT *tile, uint8_t *mask_tile,
                                      csm_partial *blocks, csm_partial *partials)
{
    const int64_t count = (n + PARTS_TILE_ROWS - 1) / PARTS_TILE_ROWS;
    for (int64_t b = 0; b < count; b++) {
        const int64_t start = b * PARTS_TILE_ROWS;
        const int64_t length = n - start < PARTS_TILE_ROWS ? n - start : PARTS_TILE_ROWS;
        PARTS_FN(gather)(x, inner, start, length, columns, tile);
        if (where)
            PARTS_FN(gather_mask)(where, inner, start, length, columns, mask_tile);
        for (int64_t j = 0; j < columns; j++)
            PARTS_FN(csm_partial_of)(kernels, tile + j * PARTS_TILE_ROWS,
                                     where ? mask_tile + j * PARTS_TILE_ROWS : NULL, NULL, length, precision,
                                     temperature, &blocks[j * count + b]);
    }
    for (int64_t j = 0; j < columns; j++) {
        if (count == 1)
            partials[j] = blocks[j];
        else
            csm_merge_partials(blocks + j * count, count, 1, temperature, &partials[j]);
    }
}

int PARTS_FN(csm_partials)(csm_precision precision, const ELEMENT *x, const uint8_t *where, int64_t outer, int64_t n,
                           int64_t inner, double temperature, double *partials)
{
    if (outer < 0 || n < 0 || inner < 0 || (precision != CSM_EXACT && precision != CSM_FAST) ||
        !temperature_valid(temperature))
        return CSM_ERROR_BAD_ARGUMENT;
    csm_partial *records = (csm_partial *)partials;
    const int64_t slices = outer * inner;
    if (slices == 0)
        return CSM_OK;
    if (n == 0) {
        for (int64_t slice = 0; slice < slices; slice++)
            records[slice] = (csm_partial){-INFINITY, 0.0, 0.0, 0.0};
        return CSM_OK;
    }
    const csm_kernel_table *kernels = csm_current_kernels();
    csm_temperature storage;
    const csm_temperature *tempered = csm_temperature_init(&storage, temperature);
    if (inner == 1) {
        csm_partial *blocks =
            (csm_partial *)malloc((size_t)((n + PARTS_BLOCK - 1) / PARTS_BLOCK) * sizeof(csm_partial));
        if (!blocks)
            return CSM_ERROR_NO_MEMORY;
        for (int64_t row = 0; row < outer; row++)
            PARTS_FN(row_partial)(kernels, precision, x + row * n, where ? where + row * n : NULL, n, tempered, blocks,
                                  &records[row]);
        free(blocks);
        return CSM_OK;
    }
    const int64_t count = (n + PARTS_TILE_ROWS - 1) / PARTS_TILE_ROWS;
    ELEMENT *tile = (ELEMENT *)malloc((size_t)PARTS_BLOCK * sizeof(ELEMENT));
    uint8_t *mask_tile = (uint8_t *)malloc((size_t)PARTS_BLOCK);
    csm_partial *blocks = (csm_partial *)malloc((size_t)(TILE_COLUMNS * count) * sizeof(csm_partial));
    if (!tile || !mask_tile || !blocks) {
        free(tile);
        free(mask_tile);
        free(blocks);
        return CSM_ERROR_NO_MEMORY;
    }
    for (int64_t slab = 0; slab < outer; slab++) {
        for (int64_t first = 0; first < inner; first += TILE_COLUMNS) {
            const int64_t offset = slab * n * inner + first;
            PARTS_FN(column_partials)(kernels, precision, x + offset, where ? where + offset : NULL, n, inner,
                                      inner - first < TILE_COLUMNS ? inner - first : TILE_COLUMNS, tempered, tile,
                                      mask_tile, blocks, &records[slab * inner + first]);
        }
    }
    free(tile);
    free(mask_tile);
    free(blocks);
    return CSM_OK;
}

/* One row (of x or of a tile) from its slice's scale record; a special slice
 * is NaN where included, 0 (softmax) / -inf (log_softmax) where excluded. */
static void PARTS_FN(finish_row)(const csm_kernel_table *kernels, int operation, int precision, const ELEMENT *x,
                                 const uint8_t *where, ELEMENT *y, int64_t n, const csm_temperature *temperature,
                                 const double *record)
{
    csm_row_scale scale;
    if (scale_from_record(record, &scale) == CSM_ROW_FINITE) {
        PARTS_KERNEL(kernels, finish)(x, where, y, n, operation, precision, temperature, &scale);
        return;
    }
    const ELEMENT excluded = operation == CSM_SOFTMAX ? (ELEMENT)0 : (ELEMENT)-INFINITY;
    for (int64_t i = 0; i < n; i++)
        y[i] = !where || where[i] ? (ELEMENT)NAN : excluded;
}

int PARTS_FN(csm_normalize)(csm_operation operation, csm_precision precision, const ELEMENT *x, const uint8_t *where,
                            ELEMENT *y, int64_t outer, int64_t n, int64_t inner, double temperature,
                            const double *scales)
{
    if (outer < 0 || n < 0 || inner < 0 || (precision != CSM_EXACT && precision != CSM_FAST) ||
        (operation != CSM_SOFTMAX && operation != CSM_LOG_SOFTMAX) || !temperature_valid(temperature))
        return CSM_ERROR_BAD_ARGUMENT;
    if (outer == 0 || n == 0 || inner == 0)
        return CSM_OK;
    const csm_kernel_table *kernels = csm_current_kernels();
    csm_temperature storage;
    const csm_temperature *tempered = csm_temperature_init(&storage, temperature);
    if (inner == 1) {
        for (int64_t row = 0; row < outer; row++)
            PARTS_FN(finish_row)(kernels, operation, precision, x + row * n, where ? where + row * n : NULL,
                                 y + row * n, n, tempered, scales + row * CSM_SCALE_DOUBLES);
        return CSM_OK;
    }
    ELEMENT *tile = (ELEMENT *)malloc((size_t)PARTS_BLOCK * sizeof(ELEMENT));
    uint8_t *mask_tile = (uint8_t *)malloc((size_t)PARTS_BLOCK);
    if (!tile || !mask_tile) {
        free(tile);
        free(mask_tile);
        return CSM_ERROR_NO_MEMORY;
    }
    for (int64_t slab = 0; slab < outer; slab++) {
        for (int64_t first = 0; first < inner; first += TILE_COLUMNS) {
            const int64_t columns = inner - first < TILE_COLUMNS ? inner - first : TILE_COLUMNS;
            const int64_t offset = slab * n * inner + first;
            for (int64_t start = 0; start < n; start += PARTS_TILE_ROWS) {
                const int64_t length = n - start < PARTS_TILE_ROWS ? n - start : PARTS_TILE_ROWS;
                PARTS_FN(gather)(x + offset, inner, start, length, columns, tile);
                if (where)
                    PARTS_FN(gather_mask)(where + offset, inner, start, length, columns, mask_tile);
                for (int64_t j = 0; j < columns; j++) /* in place: the kernels allow y == x */
                    PARTS_FN(finish_row)(kernels, operation, precision, tile + j * PARTS_TILE_ROWS,
                                         where ? mask_tile + j * PARTS_TILE_ROWS : NULL, tile + j * PARTS_TILE_ROWS,
                                         length, tempered, scales + (slab * inner + first + j) * CSM_SCALE_DOUBLES);
                PARTS_FN(scatter)(tile, inner, start, length, columns, y + offset);
            }
        }
    }
    free(tile);
    free(mask_tile);
    return CSM_OK;
}

#undef PARTS_TILE_ROWS
#undef PARTS_BLOCK
#undef PARTS_KERNEL
#undef PARTS_FN
#undef PARTS_FN2
#undef PARTS_FN_
