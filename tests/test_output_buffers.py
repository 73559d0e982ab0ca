"""Large results come from the C backend's output buffer cache
(src_c/output_buffers.c): 64-byte aligned, reused once freed, never shared
between live arrays, and ordinary ndarrays for resize, pickle, copy and
threads.  CSOFTMAX_BUFFER_CACHE_MB is checked in fresh interpreters."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _subproc import run_python
from conftest import CSOFTMAX_ERR, csoftmax, native

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy < 2
    from numpy.core.multiarray import get_handler_name

pytestmark = pytest.mark.skipif(
    csoftmax is None or csoftmax.backend != "c",
    reason=CSOFTMAX_ERR or "the C backend is not active",
)

HANDLER = "csoftmax_output_buffers"
MIB = 1 << 20


def data(a):
    return a.ctypes.data


def handler_of(a):
    """The allocator that owns `a`'s memory (views report their base's)."""
    while a.base is not None:
        a = a.base
    return get_handler_name(a)


def numpy_softmax(x, axis, op="softmax"):
    """The textbook formula in float64."""
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return np.exp(shifted - log_sum) if op == "softmax" else shifted - log_sum


def assert_correct(y, x, axis=-1, op="softmax"):
    """Within 8 ULP for float32; for float64, within the formula's own rounding error."""
    tolerance = max(8 * np.finfo(x.dtype).eps, 1e-12)
    atol = tolerance if op == "log_softmax" else 0  # log_softmax near 0: absolute
    np.testing.assert_allclose(y, numpy_softmax(x, axis, op), rtol=tolerance, atol=atol)


@pytest.fixture
def x(rng):
    """2 MiB of float32: above CSM_BUFFER_MIN_BYTES."""
    return (rng.standard_normal((512, 1024)) * 4).astype(np.float32)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_large_results_are_aligned_and_correct(op, dtype, axis, x):
    x = x.astype(dtype)
    y = getattr(csoftmax, op)(x, axis=axis)
    assert get_handler_name(y) == HANDLER
    assert data(y) % 64 == 0
    assert y.flags.c_contiguous and y.flags.owndata and y.flags.writeable
    assert_correct(y, x, axis, op)


def test_blocks_of_4_mib_start_on_a_huge_page(rng):
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    assert data(csoftmax.softmax(x, axis=1)) % (2 * MIB) == 0


def test_small_results_stay_on_numpys_allocator(rng):
    just_below = rng.standard_normal(MIB // 4 - 1).astype(np.float32)
    at_the_minimum = rng.standard_normal(MIB // 4).astype(np.float32)
    assert get_handler_name(csoftmax.softmax(rng.standard_normal(10))) == "default_allocator"
    assert get_handler_name(csoftmax.softmax(just_below)) == "default_allocator"
    assert get_handler_name(csoftmax.softmax(at_the_minimum)) == HANDLER


def test_the_default_allocator_is_restored(x):
    csoftmax.softmax(x, axis=1)
    assert get_handler_name() == "default_allocator"
    assert get_handler_name(np.empty(2 * MIB, np.uint8)) == "default_allocator"


def test_the_default_allocator_is_restored_after_a_failed_allocation():
    with pytest.raises((MemoryError, ValueError)):  # ValueError: too big for a 32-bit size
        native._empty_output((1 << 20, 1 << 20, 1 << 10), np.float32)  # 4 PiB
    assert get_handler_name() == "default_allocator"


def test_a_freed_block_is_reused(x):
    if native.get_buffer_cache_limit() < x.nbytes:
        pytest.skip("CSOFTMAX_BUFFER_CACHE_MB is below this test's 2 MiB")
    y = csoftmax.softmax(x, axis=1)
    address = data(y)
    del y
    y = csoftmax.softmax(x, axis=1)
    assert data(y) == address
    assert_correct(y, x, axis=1)


def test_live_results_never_share_memory(rng):
    inputs = [rng.standard_normal((256, 1024)).astype(np.float32) * (k + 1) for k in range(10)]
    for _ in range(2):  # the second round draws on the cache the first one filled
        results = [csoftmax.softmax(x, axis=1) for x in inputs]
        assert len({data(y) for y in results}) == len(results)
        for x, y in zip(inputs, results):
            assert_correct(y, x, axis=1)
        del results


def test_resize_keeps_the_contents(x):
    y = csoftmax.softmax(x, axis=1)
    want = y.copy()
    y.resize((1024, 1024), refcheck=False)
    assert data(y) % 64 == 0
    np.testing.assert_array_equal(y[:512], want)
    np.testing.assert_array_equal(y[512:], 0)
    y.resize((3, 1024), refcheck=False)
    np.testing.assert_array_equal(y, want[:3])


def test_pickle_and_copies(x):
    y = csoftmax.softmax(x, axis=1)
    for other in (pickle.loads(pickle.dumps(y)), copy.copy(y), copy.deepcopy(y), y.copy()):
        assert data(other) != data(y)
        np.testing.assert_array_equal(other, y)


def test_the_general_path_uses_the_cache_too(x, rng):
    where = rng.random(x.shape) < 0.9
    y = csoftmax.softmax(x, axis=1, where=where)
    assert handler_of(y) == HANDLER and data(y) % 64 == 0
    want = numpy_softmax(np.where(where, x, -np.inf), axis=1)
    np.testing.assert_allclose(y, want, rtol=8 * np.finfo(np.float32).eps)
    grad = rng.standard_normal(x.shape).astype(np.float32)
    g = csoftmax.softmax_backward(grad, y, axis=1)
    assert handler_of(g) == HANDLER
    want = y * (grad - (grad * y).sum(axis=1, keepdims=True, dtype=np.float64))
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_threads_get_their_own_correct_results(rng):
    inputs = [rng.standard_normal((256, 1024)).astype(np.float32) * (k % 5 + 1) for k in range(24)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda x: csoftmax.softmax(x, axis=1), inputs))
    for x, y in zip(inputs, results):
        assert get_handler_name(y) == HANDLER and data(y) % 64 == 0
        assert_correct(y, x, axis=1)


def test_limit_zero_caches_nothing(x):
    limit = native.get_buffer_cache_limit()
    try:
        native.set_buffer_cache_limit(0)
        assert native.get_buffer_cache_limit() == 0
        y = csoftmax.softmax(x, axis=1)
        assert data(y) % 64 == 0
        assert_correct(y, x, axis=1)
    finally:
        native.set_buffer_cache_limit(limit)
    native.release_buffer_cache()
    with pytest.raises(ValueError):
        native.set_buffer_cache_limit(-1)


PROBE = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import csoftmax
import numpy as np
from csoftmax import _native
x = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
y = [csoftmax.softmax(x, axis=1) for _ in range(3)][-1]
e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
print(json.dumps({
    "limit": _native.get_buffer_cache_limit(),
    "aligned": y.ctypes.data % 64 == 0,
    "error": float(np.max(np.abs(y / (e / e.sum(axis=1, keepdims=True)) - 1))),
    "environment": csoftmax.show_config(mode="dicts")["environment"],
    "warnings": [str(w.message) for w in caught],
}))
"""


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "value, limit", [("0", 0), ("64", 64 * MIB), ("lots", 512 * MIB), ("-1", 512 * MIB)]
)
def test_environment_variable(value, limit):
    r = run_python(PROBE, timeout=90, CSOFTMAX_BUFFER_CACHE_MB=value)
    assert r.returncode == 0, r
    d = r.json()
    assert d["limit"] == limit
    assert d["aligned"] and d["error"] < 8 * np.finfo(np.float32).eps
    assert d["environment"]["CSOFTMAX_BUFFER_CACHE_MB"] == value
    if value.isdigit():
        assert d["warnings"] == []
    else:
        assert len(d["warnings"]) == 1 and "CSOFTMAX_BUFFER_CACHE_MB" in d["warnings"][0]
