"""Memory layouts of the input and of out=.

Inputs: byte-swapped, unaligned, read-only, Fortran-ordered, negatively
strided, every-other-element, broadcast (0-stride) -- all give correct
results (checked against the reference) and are never modified.

out=: non-contiguous, byte-swapped, unaligned, out is x, out partially
overlapping x either way -- the result is bitwise what a fresh buffer gets,
and out is returned.  Bad out: wrong shape -> ValueError, wrong dtype ->
TypeError, read-only -> ValueError, not an ndarray -> TypeError."""

from __future__ import annotations

import numpy as np
import pytest
from reference import assert_ulp, mp_reference

SOFT = ["softmax", "log_softmax"]
DT = [np.float32, np.float64]


def unaligned(a):
    """A copy of a whose data pointer is at an odd address."""
    a = np.asarray(a)
    buf = np.zeros(a.nbytes + 1, np.uint8)
    u = buf[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    assert u.ctypes.data % 2 == 1
    return u


def _inputs(dtype, rng):
    base = (rng.standard_normal((6, 37)) * 3).astype(dtype)
    yield "contiguous", base.copy()
    yield "byteswapped", base.astype(np.dtype(dtype).newbyteorder(">" if np.little_endian else "<"))
    yield "unaligned", unaligned(base)
    ro = base.copy()
    ro.setflags(write=False)
    yield "readonly", ro
    yield "fortran", np.asfortranarray(base)
    yield "neg-stride-rows", base[::-1]
    yield "neg-stride-cols", base[:, ::-1]
    yield "neg-stride-both", base[::-1, ::-1]
    wide = (rng.standard_normal((12, 74)) * 3).astype(dtype)
    yield "every-other", wide[::2, ::2]
    yield "every-other-cols", wide[:6, ::2]
    yield "transposed", np.ascontiguousarray(wide.T)[:37, :6].T  # F-like strides, a view
    yield "broadcast", np.broadcast_to((rng.standard_normal(37) * 3).astype(dtype), (6, 37))
    sw = base.astype(np.dtype(dtype).newbyteorder(">" if np.little_endian else "<"))
    yield "byteswapped-unaligned-strided", unaligned(sw)[:, ::-1]


INPUT_KINDS = [k for k, _ in _inputs(np.float64, np.random.default_rng(0))]


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", SOFT + ["logsumexp"])
def test_input_layouts(impl, precision, op, dtype, kind):
    x = dict(_inputs(dtype, np.random.default_rng(1)))[kind]
    before = np.array(x, copy=True)
    for axis in [None, 0, 1, -1, (1, 0)]:
        got = impl.call(op, x, axis=axis, precision=precision)
        got = np.asarray(got)
        assert got.dtype.newbyteorder("=") == np.dtype(dtype)
        ref = mp_reference(np.array(x, dtype=dtype), op, axis=axis)
        assert_ulp(got.astype(dtype), ref, op, precision, msg=f"{kind} axis={axis}")
    np.testing.assert_array_equal(x, before)  # never modified
    assert x.dtype == before.dtype


@pytest.mark.parametrize("op", SOFT)
def test_3d_permuted_views(impl, precision, op, rng):
    base = rng.standard_normal((4, 5, 6)) * 3
    for perm in [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1), (2, 0, 1)]:
        x = base.transpose(perm)
        for axis in [0, 1, 2, (0, 2), None]:
            got = impl.call(op, x, axis=axis, precision=precision)
            assert_ulp(
                got,
                mp_reference(np.ascontiguousarray(x), op, axis=axis),
                op,
                precision,
                msg=f"perm={perm} axis={axis}",
            )


# --------------------------------------------------------------------- out


def _fresh(impl, op, x, axis, precision):
    return impl.call(op, np.array(x, copy=True), axis=axis, precision=precision)


def _outs(shape, dtype):
    yield "contiguous", np.empty(shape, dtype)
    yield "fortran", np.empty(shape, dtype, order="F")
    yield "strided", np.empty((shape[0], shape[1] * 2), dtype)[:, ::2]
    yield "neg-strided", np.empty(shape, dtype)[::-1, ::-1]
    yield (
        "byteswapped",
        np.empty(shape, np.dtype(dtype).newbyteorder(">" if np.little_endian else "<")),
    )
    yield "unaligned", unaligned(np.empty(shape, dtype))
    yield (
        "byteswapped-strided",
        np.empty(
            (shape[0] * 2, shape[1]), np.dtype(dtype).newbyteorder(">" if np.little_endian else "<")
        )[::2],
    )


OUT_KINDS = [k for k, _ in _outs((2, 2), np.float64)]


@pytest.mark.parametrize("kind", OUT_KINDS)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
@pytest.mark.parametrize("op", SOFT)
def test_out_layouts(impl, precision, op, dtype, kind, rng):
    x = (rng.standard_normal((5, 33)) * 3).astype(dtype)
    for axis in [None, 0, 1]:
        out = dict(_outs(x.shape, dtype))[kind]
        out[...] = 12345  # garbage that must be overwritten
        want = _fresh(impl, op, x, axis, precision)
        got = impl.call(op, x, axis=axis, precision=precision, out=out)
        assert got is out, "out must be returned"
        np.testing.assert_array_equal(out, want, err_msg=f"axis={axis}")
        # the values are right in absolute terms too
        assert_ulp(out.astype(dtype), mp_reference(x, op, axis=axis), op, precision)


@pytest.mark.parametrize("op", SOFT)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
def test_out_is_x(impl, precision, op, dtype, rng):
    for shape, axis, view in [
        ((5, 33), 1, None),
        ((5, 33), 0, None),
        ((5, 33), None, None),
        ((8, 66), 1, (slice(None, None, 2), slice(None, None, 2))),
        ((1000,), 0, None),
        ((70_001,), None, None),
        ((40, 3), 0, None),
        ((6, 9), 1, (slice(None, None, -1), slice(None))),
    ]:
        buf = (rng.standard_normal(shape) * 3).astype(dtype)
        x = buf if view is None else buf[view]
        want = _fresh(impl, op, x, axis, precision)
        got = impl.call(op, x, axis=axis, precision=precision, out=x)
        assert got is x
        np.testing.assert_array_equal(x, want, err_msg=f"{shape} axis={axis} view={view}")


@pytest.mark.parametrize("op", SOFT)
@pytest.mark.parametrize("dtype", DT, ids=["f32", "f64"])
def test_out_partially_overlapping_x(impl, precision, op, dtype, rng):
    failures = []
    for n in [2, 3, 9, 33, 1025, 70_001]:
        base = (rng.standard_normal(n + 1) * 3).astype(dtype)
        for name, xs, os_ in [
            ("x=buf[:-1], out=buf[1:]", slice(None, -1), slice(1, None)),
            ("x=buf[1:], out=buf[:-1]", slice(1, None), slice(None, -1)),
        ]:
            buf = base.copy()
            x, out = buf[xs], buf[os_]
            want = _fresh(impl, op, x, None, precision)
            got = impl.call(op, x, precision=precision, out=out)
            if got is not out:
                failures.append(f"n={n} {name}: out not returned")
            if not np.array_equal(out, want):
                failures.append(f"n={n} {name}: differs from the fresh-buffer result")
        # reversed view of the same memory
        buf = base.copy()
        x, out = buf, buf[::-1]
        want = _fresh(impl, op, x, None, precision)
        impl.call(op, x, precision=precision, out=out)
        if not np.array_equal(out, want):
            failures.append(f"n={n} out=x[::-1]: differs from the fresh-buffer result")
    # 2-D: rows shifted by one row, and by one element, for both axes
    for shape in [(7, 33), (40, 5)]:
        for axis in [0, 1, None]:
            base = (rng.standard_normal((shape[0] + 1, shape[1])) * 3).astype(dtype)
            for name, xs, os_ in [
                ("rows+1", slice(None, -1), slice(1, None)),
                ("rows-1", slice(1, None), slice(None, -1)),
            ]:
                buf = base.copy()
                x, out = buf[xs], buf[os_]
                want = _fresh(impl, op, x, axis, precision)
                impl.call(op, x, axis=axis, precision=precision, out=out)
                if not np.array_equal(out, want):
                    failures.append(f"{shape} axis={axis} {name}: differs")
            flat = (rng.standard_normal(shape[0] * shape[1] + 1) * 3).astype(dtype)
            x, out = flat[:-1].reshape(shape), flat[1:].reshape(shape)
            want = _fresh(impl, op, x, axis, precision)
            impl.call(op, x, axis=axis, precision=precision, out=out)
            if not np.array_equal(out, want):
                failures.append(f"{shape} axis={axis} shifted by one element: differs")
            buf = (rng.standard_normal(shape) * 3).astype(dtype)
            want = _fresh(impl, op, buf, axis, precision)
            impl.call(op, buf, axis=axis, precision=precision, out=buf.T.T[::-1])
            if not np.array_equal(buf[::-1], want):
                failures.append(f"{shape} axis={axis} out=x[::-1]: differs")
    assert not failures, "\n".join(failures)


def test_out_with_other_dtypes(impl, precision, rng):
    # float16 -> float16 out; ints -> float64 out; 0-d; empty
    x = (rng.standard_normal(20) * 2).astype(np.float16)
    out = np.empty(20, np.float16)
    assert impl.call("softmax", x, precision=precision, out=out) is out
    np.testing.assert_array_equal(out, impl.call("softmax", x, precision=precision))
    xi = np.arange(10, dtype=np.uint8)
    out = np.empty(10, np.float64)
    assert impl.call("log_softmax", xi, precision=precision, out=out) is out
    np.testing.assert_array_equal(out, impl.call("log_softmax", xi, precision=precision))
    out = np.empty((), np.float64)
    assert impl.call("softmax", np.array(3.0), precision=precision, out=out) is out
    assert out == 1.0
    out = np.empty((3, 0))
    assert impl.call("log_softmax", np.zeros((3, 0)), axis=1, precision=precision, out=out) is out


@pytest.mark.parametrize("op", SOFT)
def test_bad_out(impl, precision, op):
    x = np.random.default_rng(3).standard_normal((4, 5))
    bad = [
        (np.empty((5, 4)), ValueError, "wrong shape"),
        (np.empty((4, 5, 1)), ValueError, "wrong ndim"),
        (np.empty((1, 5)), ValueError, "broadcastable but wrong shape"),
        (np.empty(20), ValueError, "same size, wrong shape"),
        (np.empty((4, 5), np.float32), TypeError, "float32 out for float64"),
        (np.empty((4, 5), np.complex128), TypeError, "complex out"),
        (np.empty((4, 5), np.int64), TypeError, "int out"),
        (np.empty((4, 5), np.longdouble), TypeError, "longdouble out"),
        ([[0.0] * 5] * 4, TypeError, "list out"),
    ]
    ro = np.empty((4, 5))
    ro.setflags(write=False)
    bad.append((ro, ValueError, "read-only out"))
    bad.append((np.broadcast_to(np.empty(5), (4, 5)), ValueError, "broadcast (read-only) out"))
    for out, exc, why in bad:
        with pytest.raises(exc):
            impl.call(op, x, axis=1, precision=precision, out=out)
            pytest.fail(why)
    x32 = x.astype(np.float32)
    with pytest.raises(TypeError):
        impl.call(op, x32, axis=1, precision=precision, out=np.empty((4, 5)))


def test_input_never_modified(impl, precision, rng):
    for dtype in [np.float16, np.float32, np.float64, np.int32]:
        x = (rng.standard_normal((9, 17)) * 5).astype(dtype)
        x[2, 3] = -np.inf if dtype != np.int32 else 0
        before = x.copy()
        for op in SOFT:
            for axis in [None, 0, 1]:
                impl.call(op, x, axis=axis, precision=precision)
                np.testing.assert_array_equal(x, before)
        impl.logsumexp(x, axis=1)
        np.testing.assert_array_equal(x, before)
