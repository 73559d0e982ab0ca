"""Threads: the OpenMP default, set_num_threads, bitwise determinism for every
thread count, concurrent Python threads, fork() after a parallel call, and
threadpoolctl.  The C backend only (skipped without it), except the argument
checks of set_num_threads, which both backends share."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from _subproc import run_python
from conftest import AVAILABLE_ISAS, native
from reference import HAVE_EXTENDED_LD, check_ulp, ld_reference

needs_c = pytest.mark.skipif(native is None, reason="csoftmax._native is not built")


@pytest.fixture
def restore_threads():
    """Leave the thread setting as found (the override cannot be un-set from
    Python, so we put back the same number)."""
    mod = native
    before = mod.get_num_threads() if mod is not None else None
    yield
    if mod is not None:
        mod.set_num_threads(before)


def _cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count()


# ------------------------------------------------------------ get / set


@needs_c
@pytest.mark.subprocess
def test_default_is_openmp_max_threads():
    code = """
    import json, os, csoftmax
    from csoftmax import _native
    out = {"n": csoftmax.get_num_threads(), "openmp": _native.openmp_enabled(),
           "cfg": csoftmax.show_config(mode="dicts")["num_threads"]}
    try:
        import threadpoolctl
        info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "openmp"]
        out["tpc"] = [i["num_threads"] for i in info]
    except ImportError:
        out["tpc"] = None
    print(json.dumps(out))
    """
    r = run_python(code, timeout=60)
    assert r.returncode == 0, r
    d = r.json()
    if not d["openmp"]:
        assert d["n"] == 1
        return
    assert d["n"] == d["cfg"]
    assert d["n"] == _cpu_count(), d  # libgomp's default: the CPUs this process may use
    if d["tpc"]:
        assert d["n"] in d["tpc"], d
    r = run_python(code, timeout=60, OMP_NUM_THREADS=3)
    assert r.returncode == 0, r
    assert r.json()["n"] == 3


@pytest.mark.parametrize("backend", ["c", "python"])
def test_set_num_threads_arguments(backend, restore_threads):
    from conftest import fallback_mod

    mod = native if backend == "c" else fallback_mod
    if mod is None:
        pytest.skip(f"{backend} backend not available")
    before = mod.get_num_threads()
    try:
        for bad in [0, -1, -100]:
            with pytest.raises(ValueError):
                mod.set_num_threads(bad)
        for bad in [1.5, 2.0, "2", None, [2]]:
            with pytest.raises(TypeError):
                mod.set_num_threads(bad)
        assert mod.get_num_threads() == before  # rejected calls change nothing
        for good in [1, 3, np.int64(2), 8]:
            mod.set_num_threads(good)
            assert mod.get_num_threads() == int(good)
            assert isinstance(mod.get_num_threads(), int)
    finally:
        mod.set_num_threads(before)


@needs_c
def test_public_thread_functions_are_the_backends(pkg, restore_threads):
    if pkg.show_config(mode="dicts")["backend"] != "c":
        pytest.skip("csoftmax runs the python backend")
    before = pkg.get_num_threads()
    pkg.set_num_threads(3)
    assert pkg.get_num_threads() == 3 == native.get_num_threads()
    assert pkg.show_config(mode="dicts")["num_threads"] == 3
    pkg.set_num_threads(before)


# -------------------------------------------------------- determinism

THREADS = [1, 2, 3, 8]


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def _det_cases(dtype):
    r = np.random.default_rng(11)
    yield "rows(20000,37)", (r.standard_normal((20000, 37)) * 4).astype(dtype), 1
    yield "cols(300,5000)axis0", (r.standard_normal((300, 5000)) * 4).astype(dtype), 0
    yield "mid(50,200,40)axis1", (r.standard_normal((50, 200, 40)) * 4).astype(dtype), 1
    x = (r.standard_normal(3_000_000) * 4).astype(dtype)
    x[1_234_567] = 30.0  # the max in a middle block
    yield "row(3_000_000)", x, None
    y = x.copy()
    y[:100_000] = -np.inf  # whole blocks of -inf at the start
    y[2_500_000:2_600_000] = -np.inf
    yield "row(3_000_000) with -inf blocks", y, None
    # long rows that a team shares whole (each row's phases on one thread)
    z = (r.standard_normal((6, 70_001)) * 4).astype(dtype)
    z[2, 40_000:] = -np.inf
    yield "rows(6, 70_001)", z, 1


@needs_c
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_bitwise_identical_for_every_thread_count(c_impl, dtype, restore_threads):
    failures = []
    for name, x, axis in _det_cases(dtype):
        for op in ["softmax", "log_softmax", "logsumexp"]:
            for precision in ["exact", "fast"] if op != "logsumexp" else ["exact"]:
                results = {}
                for t in THREADS:
                    native.set_num_threads(t)
                    results[t] = _bits(c_impl.call(op, x, axis=axis, precision=precision))
                for t in THREADS[1:]:
                    if not np.array_equal(results[1], results[t]):
                        nd = int(np.count_nonzero(results[1] != results[t]))
                        failures.append(
                            f"{name} {op} {precision}: {t} threads differ from 1 in {nd} elements"
                        )
    assert not failures, "\n".join(failures)


@needs_c
@pytest.mark.slow
def test_long_row_many_threads_is_accurate(c_impl, restore_threads):
    if not HAVE_EXTENDED_LD:
        pytest.skip("needs an extended longdouble reference")
    x = np.random.default_rng(12).standard_normal(3_000_000) * 4
    x[2_999_000] = 35.0  # max in the last block
    native.set_num_threads(8)
    for op in ["softmax", "log_softmax"]:
        got = c_impl.call(op, x)
        problems = check_ulp(got, ld_reference(x, op), op)
        assert not problems, (op, problems)


# -------------------------------------------------------- concurrency


@needs_c
@pytest.mark.slow
def test_concurrent_python_threads(c_impl):
    r = np.random.default_rng(13)
    jobs = []
    shapes = [
        ((500, 37), 1, np.float64),
        ((37, 500), 0, np.float32),
        ((200_000,), None, np.float64),
        ((64, 64, 8), 1, np.float32),
        ((3, 5), None, np.float64),
        ((1000, 129), 1, np.float32),
        ((70_001,), 0, np.float32),
        ((300, 300), 0, np.float64),
    ]
    for i, (shape, axis, dt) in enumerate(shapes):
        x = (r.standard_normal(shape) * 3).astype(dt)
        op = ["softmax", "log_softmax", "logsumexp"][i % 3]
        prec = ["exact", "fast"][i % 2]
        jobs.append((op, x, axis, prec))
    serial = [c_impl.call(op, x, axis=axis, precision=p) for op, x, axis, p in jobs]
    barrier = threading.Barrier(len(jobs))
    errors = []

    def worker(k):
        op, x, axis, p = jobs[k]
        try:
            barrier.wait(timeout=30)
            for it in range(15):
                out = None
                if op != "logsumexp" and it % 2:
                    out = np.empty_like(x)
                y = c_impl.call(
                    op, x, axis=axis, precision=p, **({"out": out} if out is not None else {})
                )
                if not np.array_equal(y, serial[k]):
                    errors.append(f"thread {k} ({op} {x.shape}) iteration {it} differs from serial")
                    return
        except Exception as e:  # pragma: no cover
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


@needs_c
@pytest.mark.slow
def test_calls_release_the_gil(restore_threads):
    """A long call on one thread must not stop another Python thread."""
    import time

    native.set_num_threads(1)  # leave a core to the ticker

    x = np.random.default_rng(14).standard_normal(8_000_000)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    native.softmax(x)  # warm up
    t0 = time.perf_counter()
    for _ in range(3):
        native.softmax(x)
    single = (time.perf_counter() - t0) / 3
    if single < 0.005:
        pytest.skip("calls too fast here to observe the GIL")
    th = threading.Thread(target=ticker)
    th.start()
    time.sleep(0.01)
    t0 = time.perf_counter()
    for _ in range(5):
        native.softmax(x)
    t1 = time.perf_counter()
    stop.set()
    th.join()
    during = [t for t in ticks if t0 < t < t1]
    gaps = np.diff(during)
    # With the GIL held for a whole call the ticker could tick only between
    # calls, a call's length (>= 5 ms) apart; released, it ticks about every
    # millisecond.  The median gap, unlike a count of ticks, does not move when
    # a shared machine parks the ticker now and then.
    assert len(during) >= 5 and np.median(gaps) < single / 2, (
        len(during),
        float(np.median(gaps)) if len(gaps) else None,
        single,
    )


# ---------------------------------------------------------------- fork

FORK_CODE = """
import json, os, sys, numpy as np, csoftmax
from csoftmax import _native
{setup}
x = np.random.default_rng(0).standard_normal((3000, 1000))
row = np.random.default_rng(1).standard_normal(2_000_000)
y = csoftmax.softmax(x, axis=1)          # parallel-sized calls in the parent
z = csoftmax.log_softmax(row)
pid = os.fork()
if pid == 0:
    try:
        ok = (np.array_equal(csoftmax.softmax(x, axis=1), y)
              and np.array_equal(csoftmax.log_softmax(row), z)
              and np.array_equal(csoftmax.softmax(x, axis=0), csoftmax.softmax(x, axis=0)))
        os._exit(0 if ok else 3)
    except BaseException:
        os._exit(4)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
# the parent still works in parallel afterwards
ok = np.array_equal(csoftmax.softmax(x, axis=1), y)
print(json.dumps({{"child": code, "parent_ok": bool(ok)}}))
"""


@needs_c
@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
@pytest.mark.parametrize("setup", ["", "csoftmax.set_num_threads(4)"], ids=["default", "4threads"])
def test_fork_after_parallel_call(setup):
    r = run_python(FORK_CODE.format(setup=setup), timeout=90, OMP_NUM_THREADS=None)
    assert not r.timed_out, f"hang after fork: {r}"
    assert r.returncode == 0, r
    d = r.json()
    assert d["child"] == 0, f"child failed: {d} {r}"
    assert d["parent_ok"], r


@needs_c
@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
@pytest.mark.parametrize("isa", AVAILABLE_ISAS or ["none"])
def test_fork_with_each_isa(isa):
    r = run_python(FORK_CODE.format(setup=""), timeout=90, CSOFTMAX_ISA=isa)
    assert not r.timed_out, f"hang after fork: {r}"
    assert r.returncode == 0 and r.json()["child"] == 0, r


# --------------------------------------------------------- threadpoolctl


@needs_c
@pytest.mark.subprocess
def test_threadpoolctl_limits_are_honoured():
    pytest.importorskip("threadpoolctl")
    code = """
    import json, numpy as np, csoftmax
    from threadpoolctl import threadpool_limits
    x = np.random.default_rng(0).standard_normal((2000, 300))
    before = csoftmax.get_num_threads()
    y = csoftmax.softmax(x, axis=1)
    with threadpool_limits(limits=1):
        inside = csoftmax.get_num_threads()
        y1 = csoftmax.softmax(x, axis=1)
    with threadpool_limits(limits=2, user_api="openmp"):
        inside2 = csoftmax.get_num_threads()
    after = csoftmax.get_num_threads()
    print(json.dumps({"before": before, "inside": inside, "inside2": inside2, "after": after,
                      "same": bool(np.array_equal(y, y1))}))
    """
    r = run_python(code, timeout=60, OMP_NUM_THREADS=4)
    assert r.returncode == 0, r
    d = r.json()
    assert d == {"before": 4, "inside": 1, "inside2": 2, "after": 4, "same": True}, d
