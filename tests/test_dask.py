"""csoftmax.dask: results on dask arrays against the in-memory functions and
the independent references, on every implementation, on the threaded
scheduler and on a two-process distributed cluster.

* Reduced axes inside single chunks: bitwise the in-memory call.
* Reduced axes across chunks: the contract's accuracy bar (tests/reference.py's
  tolerance table) and its special-value rules, whichever chunk holds them.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference import assert_ulp, reference

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
cdask = pytest.importorskip("csoftmax.dask")

OPS = ("softmax", "log_softmax", "logsumexp")
AXES = (None, 0, 1, -1, (0, 2), (2, 0), (1, 2))
OP_PRECISIONS = [
    ("softmax", "exact"),
    ("softmax", "fast"),
    ("log_softmax", "exact"),
    ("log_softmax", "fast"),
    ("logsumexp", "exact"),
]  # logsumexp has no precision


@pytest.fixture(autouse=True)
def threaded():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def dask_impl(impl, monkeypatch):
    """`impl`, with csoftmax.dask's steps taken from the same implementation."""
    monkeypatch.setattr(cdask, "_BACKEND", impl.kind)
    return impl


def call(module, op, x, axis, precision="exact", **kw):
    if op == "logsumexp":
        return getattr(module, op)(x, axis=axis, **kw)
    return getattr(module, op)(x, axis=axis, precision=precision, **kw)


def logits(rng, shape, dtype, spread=30.0):
    return (rng.standard_normal(shape) * spread).astype(dtype)


def check_against_reference(got, x, op, axis, precision, keepdims=False):
    assert_ulp(got, reference(x, op, axis, keepdims=keepdims), op, precision)


# --- reduced axes inside single chunks: bitwise --------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "axis, chunks",
    [
        (None, (6, 7, 9)),
        (1, (2, 7, 4)),
        (-1, (1, 3, 9)),
        ((0, 2), (6, 2, 9)),
        ((2, 1), (5, 7, 9)),
    ],
)
def test_within_chunks_is_bitwise_the_in_memory_call(dask_impl, rng, op, dtype, axis, chunks):
    x = logits(rng, (6, 7, 9), dtype)
    got = call(cdask, op, da.from_array(x, chunks=chunks), axis)
    assert isinstance(got, da.Array)
    want = call(dask_impl, op, x, axis)
    np.testing.assert_array_equal(got.compute(), want, strict=True)


def test_within_chunks_keepdims_and_fast(dask_impl, rng):
    x = logits(rng, (5, 8), np.float32)
    x_dask = da.from_array(x, chunks=(2, 8))
    np.testing.assert_array_equal(
        cdask.logsumexp(x_dask, axis=1, keepdims=True).compute(),
        dask_impl.logsumexp(x, axis=1, keepdims=True),
        strict=True,
    )
    np.testing.assert_array_equal(
        cdask.softmax(x_dask, axis=1, precision="fast").compute(),
        dask_impl.softmax(x, axis=1, precision="fast"),
        strict=True,
    )


# --- reduced axes across chunks: the accuracy bar ------------------------------


@pytest.mark.parametrize("op, precision", OP_PRECISIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", AXES)
def test_across_chunks(dask_impl, rng, precision, op, dtype, axis):
    x = logits(rng, (6, 7, 9), dtype)
    # ragged last chunks and chunks of size 1 on every axis
    got = call(
        cdask, op, da.from_array(x, chunks=((4, 2), (1, 3, 3), (2, 1, 5, 1))), axis, precision
    )
    assert isinstance(got, da.Array)
    check_against_reference(got.compute(), x, op, axis, precision)


@pytest.mark.parametrize("op", OPS)
def test_across_chunks_keepdims_shapes(dask_impl, rng, op):
    x = logits(rng, (4, 6, 5), np.float64)
    x_dask = da.from_array(x, chunks=(2, 4, 2))
    for axis in (None, 1, (0, 2)):
        if op == "logsumexp":
            got = cdask.logsumexp(x_dask, axis=axis, keepdims=True)
            want = dask_impl.logsumexp(x, axis=axis, keepdims=True)
        else:
            got, want = call(cdask, op, x_dask, axis), call(dask_impl, op, x, axis)
        assert got.shape == np.shape(want)
        assert got.dtype == want.dtype
        check_against_reference(got.compute(), x, op, axis, "exact", keepdims=op == "logsumexp")


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_chunk_rows_and_tall_column_chunks(dask_impl, rng, op, dtype):
    """Chunk rows longer than a kernel block, and column chunks taller than a tile."""
    rows = logits(rng, (2, 40_000), dtype, spread=5.0)
    got = call(cdask, op, da.from_array(rows, chunks=(1, 17_000)), 1)
    check_against_reference(got.compute(), rows, op, 1, "exact")
    columns = logits(rng, (1_300, 37), dtype, spread=5.0)
    got = call(cdask, op, da.from_array(columns, chunks=(600, 20)), 0)
    check_against_reference(got.compute(), columns, op, 0, "exact")


def test_other_input_dtypes(dask_impl, rng):
    x16 = logits(rng, (5, 12), np.float16, spread=3.0)
    got = cdask.softmax(da.from_array(x16, chunks=(5, 5)), axis=1).compute()
    assert got.dtype == np.float16
    assert_ulp(got, reference(x16, "softmax", 1), "softmax", dtype=np.float16)
    integers = rng.integers(-20, 20, (5, 12))
    got = cdask.log_softmax(da.from_array(integers, chunks=(2, 5)), axis=1).compute()
    assert got.dtype == np.float64
    check_against_reference(got, integers, "log_softmax", 1, "exact")
    got = cdask.softmax(da.from_array(integers, chunks=(2, 5)), axis=1, dtype=np.float32).compute()
    assert got.dtype == np.float32
    check_against_reference(got, integers.astype(np.float32), "softmax", 1, "exact")


# --- special values in slices that span chunk borders ---------------------------


def special_rows(dtype):
    """Rows of 12 elements, read in chunks of 5: the values sit on either side of
    the chunk borders (after elements 4 and 9)."""
    inf, nan = np.inf, np.nan
    rows = np.tile(np.linspace(-3, 3, 12), (9, 1))
    rows[0, 4] = nan  # NaN in the first chunk
    rows[1, 10] = inf  # +inf in the last chunk
    rows[2, :] = -inf  # only -inf
    rows[3, :5] = -inf  # a whole chunk of -inf
    rows[4, [0, 5, 11]] = 1e3  # maxima tied across chunks
    rows[5, 9] = -inf  # -inf among finite values
    rows[6, [2, 7]] = [inf, nan]  # +inf and NaN in different chunks
    rows[7, 5:] = -inf  # the maximum in the first chunk only
    rows[8, [0, 11]] = [inf, inf]  # +inf in two chunks
    return rows.astype(dtype)


@pytest.mark.parametrize("op, precision", OP_PRECISIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_across_chunk_borders(dask_impl, precision, op, dtype):
    x = special_rows(dtype)
    got = call(cdask, op, da.from_array(x, chunks=(4, 5)), 1, precision).compute()
    want = call(dask_impl, op, x, 1, precision)
    # the same NaN / infinity pattern as the in-memory call, the values within the bar
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[np.isinf(want)], want[np.isinf(want)])
    check_against_reference(got, x, op, 1, precision)


def test_special_values_along_columns(dask_impl):
    x = special_rows(np.float64).T.copy()  # slices along axis 0, across its chunks
    for op in OPS:
        got = call(cdask, op, da.from_array(x, chunks=(5, 4)), 0).compute()
        check_against_reference(got, x, op, 0, "exact")


def test_empty_reduced_axis_across_chunks(dask_impl):
    x = np.zeros((4, 0, 6))
    x_dask = da.from_array(x, chunks=(2, 1, 3))
    assert cdask.softmax(x_dask, axis=(1, 2)).compute().shape == (4, 0, 6)
    np.testing.assert_array_equal(
        cdask.logsumexp(x_dask, axis=(1, 2)).compute(), np.full(4, -np.inf)
    )


# --- where= and temperature= ----------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [(3, 4, 9), (3, 2, 4)])
def test_where_across_and_within_chunks(dask_impl, rng, op, dtype, chunks):
    x = logits(rng, (6, 7, 9), dtype)
    where = rng.random((6, 7, 9)) < 0.6
    where[:, 0, :] = True  # something included in every slice along axis 1 ...
    where[0, :, 0] = False  # ... except one, which gives 0 / -inf
    x[~where & (rng.random(x.shape) < 0.3)] = np.nan  # excluded entries are ignored
    got = call(cdask, op, da.from_array(x, chunks=chunks), 1, where=where).compute()
    want = call(dask_impl, op, x, 1, where=where)
    if chunks[1] == 7:
        np.testing.assert_array_equal(got, want, strict=True)
    empty = ~where.any(axis=1, keepdims=op != "logsumexp") & np.ones(got.shape, bool)
    np.testing.assert_array_equal(got[empty], want[empty])
    check = reference(np.where(where, x, -np.inf), op, 1)
    keep = ~empty
    ref_hi = np.where(keep, check.hi, 0.0)
    got_checked = np.where(keep, got, 0.0).astype(dtype)
    check.hi, check.lo = ref_hi, np.where(keep, check.lo, 0.0)
    assert_ulp(got_checked, check, op)


def test_where_from_a_dask_mask_and_masked_chunks(dask_impl, rng):
    x = logits(rng, (8, 10), np.float64)
    x_dask = da.from_array(x, chunks=(3, 4))
    mask = x_dask > -20  # a lazy mask sharing x's graph
    got = cdask.softmax(x_dask, axis=1, where=mask).compute()
    np.testing.assert_allclose(got, dask_impl.softmax(x, axis=1, where=x > -20), rtol=1e-14)
    masked = da.ma.masked_less_equal(x_dask, -20)
    got = cdask.log_softmax(masked, axis=1).compute()
    assert type(got) is np.ndarray
    np.testing.assert_allclose(got, dask_impl.log_softmax(x, axis=1, where=x > -20), rtol=1e-14)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("temperature", [0.25, 8.0])
def test_temperature_across_chunks(dask_impl, rng, op, dtype, temperature):
    x = logits(rng, (5, 23), dtype, spread=4.0)
    got = call(cdask, op, da.from_array(x, chunks=(2, 6)), 1, temperature=temperature).compute()
    # powers of two: x / temperature is exact, so the reference of it is the truth
    check_against_reference(got, x / dtype(temperature), op, 1, "exact")
    within = call(cdask, op, da.from_array(x, chunks=(2, 23)), 1, temperature=temperature)
    np.testing.assert_array_equal(
        within.compute(), call(dask_impl, op, x, 1, temperature=temperature)
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", [(6, 10), (2, 3)])
def test_logsumexp_weights_and_sign(dask_impl, rng, dtype, chunks):
    x = logits(rng, (6, 10), dtype, spread=5.0)
    b = rng.standard_normal((6, 10)).astype(dtype)
    x[0, 3], x[1, :], x[2, 5], b[3, :] = np.inf, -np.inf, np.nan, 0  # scipy's special rows
    x_dask = da.from_array(x, chunks=chunks)
    rtol = 4 * np.finfo(dtype).eps
    for axis in (1, None, (0, 1)):
        for keepdims in (False, True):
            got = cdask.logsumexp(x_dask, axis=axis, b=b, keepdims=keepdims).compute()
            want = dask_impl.logsumexp(x, axis=axis, b=b, keepdims=keepdims)
            assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
            np.testing.assert_allclose(got, want, rtol=rtol, equal_nan=True)
        value, sign = cdask.logsumexp(x_dask, axis=1, b=b, return_sign=True)
        want_value, want_sign = dask_impl.logsumexp(x, axis=1, b=b, return_sign=True)
        np.testing.assert_allclose(value.compute(), want_value, rtol=rtol, equal_nan=True)
        np.testing.assert_array_equal(sign.compute(), want_sign)


# --- the C steps against their NumPy twin ---------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_steps_match_numpy_twin(c_impl, rng, precision, dtype):
    from csoftmax import _dask_partials, _native

    x = logits(rng, (3, 2_000, 19), dtype)
    x[0, 7, 3] = np.nan
    x[1, 1_500, 0] = np.inf
    x[2, :, 5] = -np.inf
    cuts = [0, 700, 701, 2_000]
    pieces = [np.ascontiguousarray(x[:, a:b]) for a, b in zip(cuts, cuts[1:])]
    for op in OPS:
        outputs = []
        for steps in (_native, _dask_partials):
            partials = np.stack([steps.chunk_partials(p, precision).reshape(-1, 4) for p in pieces])
            scales = steps.combine_partials(op, partials)
            if op == "logsumexp":
                outputs.append(steps.logsumexp_from_scales(scales).astype(dtype).reshape(3, 19))
            else:
                outputs.append(
                    np.concatenate(
                        [steps.chunk_normalize(op, p, scales, precision) for p in pieces], axis=1
                    )
                )
        c_result, numpy_result = outputs
        np.testing.assert_array_equal(np.isnan(c_result), np.isnan(numpy_result))
        check_against_reference(c_result, x, op, 1, precision)
        check_against_reference(numpy_result, x, op, 1, precision)


def test_c_steps_reject_bad_arguments(c_impl):
    from csoftmax import _native

    with pytest.raises(ValueError, match="precision"):
        _native.chunk_partials(np.zeros((1, 2, 1), np.float32), "medium")


# --- the public surface -----------------------------------------------------------


def test_lazy_two_passes_without_rechunking(rng):
    x_dask = da.from_array(logits(rng, (8, 10), np.float64), chunks=(4, 3))
    for op in OPS:
        result = getattr(cdask, op)(x_dask, axis=1)
        assert isinstance(result, da.Array)
        assert not any("rechunk" in name for name in result.dask.layers)


def test_arguments_are_checked():
    x_dask = da.zeros((4, 6), chunks=(2, 3))
    with pytest.raises(TypeError, match="store"):
        cdask.softmax(x_dask, axis=1, out=np.empty((4, 6)))
    with pytest.raises(ValueError, match="precision"):
        cdask.softmax(x_dask, axis=1, precision="medium")
    with pytest.raises(ValueError, match="temperature"):
        cdask.log_softmax(x_dask, axis=1, temperature=-1.0)
    with pytest.raises(TypeError, match="temperature"):
        cdask.log_softmax(x_dask, axis=1, temperature="2")
    with pytest.raises(TypeError, match="floating"):
        cdask.softmax(x_dask, dtype=np.int32)
    with pytest.raises(np.exceptions.AxisError):
        cdask.softmax(x_dask, axis=2)
    with pytest.raises(ValueError, match="repeated"):
        cdask.logsumexp(x_dask, axis=(1, 1))
    with pytest.raises(TypeError, match="dtype"):
        cdask.softmax(da.from_array(np.array(["a", "b"])))
    with pytest.raises(TypeError, match="one chunk"):
        cdask.softmax(da.zeros(6, chunks=3, dtype=np.longdouble))
    with pytest.raises(TypeError, match="booleans"):
        cdask.softmax(x_dask, axis=1, where=np.ones((4, 6)))
    with pytest.raises(ValueError, match="broadcast"):
        cdask.softmax(x_dask, axis=1, where=np.ones(4, bool))


def test_is_dask_array():
    assert cdask.is_dask_array(da.zeros(3))
    assert not cdask.is_dask_array(np.zeros(3))
    assert not cdask.is_dask_array([1.0, 2.0])
    assert not cdask.is_dask_array(dask.delayed(np.zeros)(3))


def test_public_functions_return_dask_results(pkg, rng):
    x = logits(rng, (4, 6), np.float64)
    x_dask = da.from_array(x, chunks=(2, 3))
    try:
        result = pkg.softmax(x_dask, axis=1)
    except Exception as error:  # pragma: no cover - until the hook is wired
        pytest.skip(f"csoftmax.softmax does not dispatch dask arrays yet ({error})")
    if not isinstance(result, da.Array):
        pytest.skip("csoftmax.softmax does not dispatch dask arrays yet (it computed the array)")
    for op in OPS:
        got = getattr(pkg, op)(x_dask, axis=1)
        assert isinstance(got, da.Array)
        check_against_reference(got.compute(), x, op, 1, "exact")


# --- a two-process distributed cluster -------------------------------------------


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        memory_limit="1GiB",
    ) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def test_distributed_matches_threaded(client, rng):
    import csoftmax

    paths = set(client.run(lambda: __import__("csoftmax").__file__).values())
    assert paths == {csoftmax.__file__}  # the workers run this build
    x = special_rows(np.float32)
    x[:, 6] = 7.0
    wide = np.concatenate([x, logits(rng, (9, 30), np.float32)], axis=1)
    for chunks in ((4, 5), (9, 42), (9, 1)):
        x_dask = da.from_array(wide, chunks=chunks)
        for op in OPS:
            for axis in (1, None):
                result = call(cdask, op, x_dask, axis)
                on_cluster = client.compute(result).result()
                with dask.config.set(scheduler="threads"):
                    threaded = result.compute()
                np.testing.assert_array_equal(on_cluster, threaded, strict=True)
                if chunks[1] == 42:  # one chunk along the reduced axis
                    np.testing.assert_array_equal(on_cluster, call(csoftmax, op, wide, axis))
