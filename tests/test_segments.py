"""segment_softmax / segment_log_softmax / segment_logsumexp: every segment bitwise equal to a
standalone csoftmax call on the C backend (short, long, huge and empty segments, trailing
dimensions, both precisions), the fallback against the same loop, out=, bad indptr, special
values, and bitwise identical results for every thread count."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import native

from csoftmax import _fallback, _segments

needs_c = pytest.mark.skipif(native is None, reason="csoftmax._native is not built")
OPS = ("softmax", "log_softmax", "logsumexp")


def segment_fn(impl, op):
    module = native if impl.kind == "c" else _segments
    return getattr(module, "segment_" + op)


def loop(module, op, x, indptr, precision="exact"):
    """The per-segment reference: one standalone call per segment along axis 0."""
    parts = []
    for a, b in zip(indptr[:-1], indptr[1:]):
        if op == "logsumexp":
            parts.append(np.asarray(module.logsumexp(x[a:b], axis=0))[None])
        else:
            parts.append(getattr(module, op)(x[a:b], axis=0, precision=precision))
    if not parts:
        shape = (0,) + x.shape[1:]
        return np.empty(shape, x.dtype if op != "logsumexp" else np.float64)
    return np.concatenate(parts)


def ragged(rng, lengths, trailing=(), dtype=np.float64, scale=5.0):
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    x = (rng.standard_normal((indptr[-1],) + trailing) * scale).astype(dtype)
    return x, indptr


LENGTHS = [3, 0, 1, 64, 65, 17, 0, 200, 64, 2, 33, 33, 33, 5000, 1, 0]


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("trailing", [(), (3,), (2, 5), (17,)])
@pytest.mark.parametrize("op", OPS)
def test_bitwise_equal_to_standalone_calls(c_impl, rng, dtype, trailing, op, precision):
    x, indptr = ragged(rng, LENGTHS, trailing, dtype)
    f = segment_fn(c_impl, op)
    got = f(x, indptr) if op == "logsumexp" else f(x, indptr, precision=precision)
    want = loop(native, op, x, indptr, precision if op != "logsumexp" else "exact")
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.tobytes() == want.tobytes()


@needs_c
@pytest.mark.parametrize("op", OPS)
def test_long_and_huge_segments_bitwise(c_impl, rng, op):
    """A segment longer than the 128 KiB rows (blocked), and one large enough to run on every
    thread, among short ones."""
    before = native.get_num_threads()
    try:
        for threads in (1, 2):
            native.set_num_threads(threads)
            x, indptr = ragged(rng, [5, 40000, 7, 300000, 0, 64], (), np.float32)
            assert (
                segment_fn(c_impl, op)(x, indptr).tobytes() == loop(native, op, x, indptr).tobytes()
            )
    finally:
        native.set_num_threads(before)


@pytest.mark.parametrize("trailing", [(), (4,)])
@pytest.mark.parametrize("op", OPS)
def test_every_impl_against_the_fallback_loop(impl, rng, trailing, op):
    for dtype in (np.float32, np.float64):
        x, indptr = ragged(rng, LENGTHS, trailing, dtype, scale=30.0)
        got = segment_fn(impl, op)(x, indptr)
        want = loop(_fallback, op, x, indptr)
        # both are within the contract's 4 ULP of the exact result; below the normal range
        # either may flush to 0
        tiny = np.finfo(dtype).tiny
        spacing = np.spacing(np.maximum(np.abs(want), tiny).astype(dtype))
        with np.errstate(invalid="ignore"):
            error = np.abs(got.astype(np.float64) - want) / spacing
        flushed = (np.abs(got) < tiny) & (np.abs(want) < tiny)
        assert np.all((got == want) | (error <= 8) | flushed), (dtype, np.nanmax(error))


def test_empty_segments_and_arrays(impl):
    x = np.array([1.0, 2.0, 3.0])
    indptr = [0, 0, 3, 3]
    assert np.array_equal(
        segment_fn(impl, "logsumexp")(x, indptr), [-np.inf, np.log(np.exp(x).sum()), -np.inf]
    )
    np.testing.assert_allclose(segment_fn(impl, "softmax")(x, indptr), np.exp(x) / np.exp(x).sum())
    empty = np.zeros((0, 2))
    assert segment_fn(impl, "softmax")(empty, [0]).shape == (0, 2)
    assert segment_fn(impl, "logsumexp")(empty, [0]).shape == (0, 2)
    lse = segment_fn(impl, "logsumexp")(empty, [0, 0, 0])
    assert lse.shape == (2, 2) and np.all(lse == -np.inf)
    assert segment_fn(impl, "log_softmax")(np.zeros((4, 0)), [0, 4]).shape == (4, 0)


def test_special_values_stay_in_their_segment(impl):
    x = np.array([np.nan, 1.0, 2.0, 3.0, -np.inf, 0.0, np.inf, 1.0, -np.inf, -np.inf])
    indptr = [0, 2, 4, 6, 8, 10]
    s = segment_fn(impl, "softmax")(x, indptr)
    assert np.all(np.isnan(s[:2])) and np.all(np.isnan(s[6:8])) and np.all(np.isnan(s[8:]))
    np.testing.assert_allclose(s[2:4], np.exp([2.0, 3.0]) / np.exp([2.0, 3.0]).sum())
    assert np.array_equal(s[4:6], [0.0, 1.0])
    lse = segment_fn(impl, "logsumexp")(x, indptr)
    assert np.isnan(lse[0]) and lse[2] == 0.0 and lse[3] == np.inf and lse[4] == -np.inf


def test_dtypes_and_inputs_untouched(impl, rng):
    for dtype, result in (
        (np.float16, np.float16),
        (np.int32, np.float64),
        (bool, np.float64),
        (np.longdouble, np.longdouble),
        (">f4", np.float32),
    ):
        x = (rng.standard_normal((20, 3)) * 4).astype(dtype)
        copy = x.copy()
        indptr = np.array([0, 5, 5, 20], np.uint32)
        for op in OPS:
            got = segment_fn(impl, op)(x, indptr)
            assert got.dtype == result
            want = loop(_fallback, op, x.astype(result), indptr)
            np.testing.assert_allclose(
                got.astype(np.float64), want.astype(np.float64), rtol=4 * np.finfo(result).eps
            )
        assert np.array_equal(x, copy)
    strided = rng.standard_normal((40, 6))[::2, ::3]
    assert np.array_equal(
        segment_fn(impl, "softmax")(strided, [0, 7, 20]),
        segment_fn(impl, "softmax")(np.ascontiguousarray(strided), [0, 7, 20]),
    )


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_out(impl, rng, op):
    f = segment_fn(impl, op)
    x, indptr = ragged(rng, [4, 0, 9, 70], (2,))
    want = f(x, indptr)
    out = np.empty_like(x)
    assert f(x, indptr, out=out) is out and np.array_equal(out, want)
    in_place = x.copy()
    assert f(in_place, indptr, out=in_place) is in_place and np.array_equal(in_place, want)
    strided = np.empty((x.shape[0], 4))[:, ::2]
    assert f(x, indptr, out=strided) is strided and np.array_equal(strided, want)
    overlapping = np.concatenate([x, x])
    shifted = overlapping[3 : 3 + x.shape[0]]
    source = overlapping[: x.shape[0]]
    expected = f(source.copy(), indptr)
    f(source, indptr, out=shifted)
    assert np.array_equal(shifted, expected)
    half = np.empty(x.shape, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        f(x, indptr, out=half)
    with pytest.raises(ValueError, match="shape"):
        f(x, indptr, out=np.empty((x.shape[0], 3)))
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(x, indptr, out=read_only)
    with pytest.raises(TypeError):
        f(x, indptr, out=[0.0])


def test_bad_indptr(impl):
    x = np.zeros((5, 2))
    f = segment_fn(impl, "softmax")
    for indptr, message in (
        ([1, 5], r"indptr\[0\]"),
        ([0, 3], r"indptr\[-1\]"),
        ([0, 4, 2, 5], "non-decreasing"),
        ([], "at least one"),
        ([[0, 5]], "1-D"),
    ):
        with pytest.raises(ValueError, match=message):
            f(x, np.array(indptr, np.int64))
        with pytest.raises(ValueError, match=message):
            segment_fn(impl, "logsumexp")(x, np.array(indptr, np.int64))
    with pytest.raises(TypeError, match="integers"):
        f(x, np.array([0.0, 5.0]))
    with pytest.raises(ValueError, match="dimension"):
        f(np.float64(1.0), [0, 1])
    with pytest.raises(ValueError, match="precision"):
        f(x, [0, 5], precision="exactly")
    with pytest.raises(TypeError):
        f(x.astype(complex), [0, 5])


@needs_c
@pytest.mark.parametrize("trailing", [(), (3,)])
def test_bitwise_for_every_thread_count(c_impl, trailing):
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 300, 3000)
    lengths[100] = 150000
    x, indptr = ragged(rng, lengths, trailing, np.float32)
    before = native.get_num_threads()
    try:
        results = {}
        for threads in (1, 2, 3):
            native.set_num_threads(threads)
            results[threads] = [segment_fn(c_impl, op)(x, indptr).tobytes() for op in OPS]
        assert results[1] == results[2] == results[3]
    finally:
        native.set_num_threads(before)
