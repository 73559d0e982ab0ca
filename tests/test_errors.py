"""Bad arguments: the contract's exceptions, and nothing crashes or hangs."""

from __future__ import annotations

import numpy as np
import pytest
from _subproc import run_python

AxisError = getattr(np, "exceptions", np).AxisError
OPS = ["softmax", "log_softmax", "logsumexp"]


@pytest.mark.parametrize("op", OPS)
def test_axis_out_of_range(impl, precision, op):
    x = np.ones((2, 3))
    for axis in [2, -3, 100, (0, 2), (-3,), (1, 5), 2**40]:
        with pytest.raises(AxisError):
            impl.call(op, x, axis=axis, precision=precision)
    with pytest.raises(AxisError):
        impl.call(op, np.ones(4), axis=1, precision=precision)
    # AxisError is both a ValueError and an IndexError, as in NumPy
    with pytest.raises(ValueError):
        impl.call(op, x, axis=7, precision=precision)
    with pytest.raises(IndexError):
        impl.call(op, x, axis=7, precision=precision)


@pytest.mark.parametrize("op", OPS)
def test_repeated_axes(impl, precision, op):
    x = np.ones((2, 3, 4))
    for axis in [(0, 0), (1, -2), (2, 0, 2), (-1, 2)]:
        with pytest.raises(ValueError) as ei:
            impl.call(op, x, axis=axis, precision=precision)
        assert not isinstance(ei.value, AxisError), axis


@pytest.mark.parametrize("op", OPS)
def test_non_int_axis(impl, precision, op):
    x = np.ones((2, 3))
    for axis in [1.0, 0.5, "0", "x", b"0", (0, 1.0), (0.0,), np.float64(1), object(), 1j]:
        with pytest.raises(TypeError):
            impl.call(op, x, axis=axis, precision=precision)


@pytest.mark.parametrize("op", OPS)
def test_int_like_axes_accepted(impl, precision, op):
    x = np.random.default_rng(0).standard_normal((2, 3))
    want = impl.call(op, x, axis=1, precision=precision)
    for axis in [np.int64(1), np.int32(-1), (np.intp(1),), np.uint8(1)]:
        np.testing.assert_array_equal(impl.call(op, x, axis=axis, precision=precision), want)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_bad_precision(impl, op):
    x = np.ones(3)
    for p in ["Exact", "FAST", "", "exact ", "medium", None, 1, 0, True, b"exact", ["exact"]]:
        with pytest.raises(ValueError):
            impl.call(op, x, precision=p)
    # also when nothing needs computing
    for x in [np.ones(0), np.array(1.0), np.ones((3, 0))]:
        with pytest.raises(ValueError):
            impl.call(op, x, precision="medium")


def test_bad_precision_checked_before_anything_else(impl):
    # an invalid precision with otherwise fine complex / longdouble input
    for x in [np.ones(3, np.complex128), np.ones(3, np.longdouble), [1, 2]]:
        with pytest.raises(ValueError):
            impl.softmax(x, precision="medium")


def test_unknown_keyword(impl):
    with pytest.raises(TypeError):
        impl.softmax(np.ones(3), precison="fast")  # the typo is the point
    with pytest.raises(TypeError):
        impl.logsumexp(np.ones(3), precision="fast")  # logsumexp has no precision


NO_CRASH = r"""
import itertools, json, numpy as np, csoftmax
from csoftmax import _fallback
mods = [csoftmax, _fallback]
try:
    from csoftmax import _native
    mods.append(_native)
except ImportError:
    pass
weird_x = [None, "abc", {"a": 1}, object(), [1, "a"], [[1, 2], [3]], lambda: 1, b"\x00\x01",
           np.array([1, 2], dtype=[("a", "f8"), ("b", "i4")]), np.array([np.nan] * 5), 10 ** 400,
           np.empty((0, 2 ** 20)), np.lib.stride_tricks.as_strided(np.zeros(1), (3, 4), (0, 0)),
           np.zeros((1,) * 32), np.array([1 + 2j, 3])]
weird_axis = [None, 0, -1, 2 ** 63, -2 ** 63, 2 ** 70, (), (0, 0), "a", [0], [0, 1], np.array([0]),
              np.array(0), slice(None)]
weird_out = [None, 1, np.empty(0), np.empty((1,) * 32), np.empty(3, "f8")[::-1]]
count = 0
for mod in mods:
    for x, axis in itertools.product(weird_x, weird_axis):
        for name in ["softmax", "log_softmax", "logsumexp"]:
            f = getattr(mod, name)
            for kw in ([{}] + ([{"out": o} for o in weird_out] if name != "logsumexp" else
                               [{"b": np.array([1.0, -1.0])}, {"keepdims": "yes"}, {"return_sign": 2}])):
                try:
                    f(x, axis=axis, **kw)
                except (TypeError, ValueError, IndexError, OverflowError, MemoryError, KeyError):
                    pass
                count += 1
print(json.dumps({"calls": count}))
"""


@pytest.mark.subprocess
def test_nothing_crashes_or_hangs(pkg):
    """Garbage in, a Python exception (or a result) out: no segfault, no hang,
    no unexpected exception type (run in a subprocess with a timeout)."""
    r = run_python(NO_CRASH, timeout=120)
    assert not r.timed_out, f"hang: {r}"
    assert r.returncode == 0, r
    assert r.json()["calls"] > 1000
