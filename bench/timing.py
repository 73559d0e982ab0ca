"""Interleaved timing: warm-up, calibration, then rounds that time every implementation once.

Each timing runs an implementation ``inner`` times back to back (``inner`` chosen so one timing
lasts at least ``min_time``) and records the per-call time. Rounds visit the implementations in a
fresh random order, so slow drifts of the (shared, noisy) machine hit every implementation alike.
The result per implementation is the median and the quartiles of the per-call times over rounds.
Alongside the wall time, process CPU time gives the average number of busy cores, which shows
implementations that use more threads than they were told (or spin after returning).
"""

from __future__ import annotations

import gc
import math
import time

import numpy as np

perf_counter = time.perf_counter
process_time = time.process_time


def calibrate(fn, min_time: float) -> int:
    """Smallest power-of-two-ish repeat count whose total time is at least ``min_time``."""
    inner = 1
    while True:
        t0 = perf_counter()
        for _ in range(inner):
            fn()
        elapsed = perf_counter() - t0
        if elapsed >= min_time:
            return inner
        if elapsed <= 0:
            inner *= 10
            continue
        inner = max(inner * 2, math.ceil(inner * min_time * 1.2 / elapsed))


def warm_up(fn, seconds: float, min_calls: int = 3) -> None:
    t0 = perf_counter()
    calls = 0
    while calls < min_calls or perf_counter() - t0 < seconds:
        fn()
        calls += 1


def settle_threads(quiet: float, cap: float = 0.2) -> float:
    """Sleep until the threads of the implementation timed before go idle; returns the wait.

    Thread pools spin for a while after their work is done (ONNX Runtime's for ~35 ms on the
    development machine, libgomp's for a few ms), on the CPUs the next implementation is about
    to use: a fixed short pause would charge that spinning to whoever comes next. So sleep in
    steps of ``quiet`` seconds until one step passes with the process (every thread) using under
    5% of a CPU, at most ``cap`` seconds.
    """
    start = perf_counter()
    while True:
        c0, t0 = process_time(), perf_counter()
        time.sleep(quiet)
        t1 = perf_counter()
        if (process_time() - c0) < 0.05 * (t1 - t0) or t1 - start >= cap:
            return t1 - start


def measure(
    fns: dict, *, rounds: int, min_time: float, warmup: float, settle: float, seed: int = 0
) -> dict:
    """Time every callable of ``fns`` ({name: fn}) interleaved. Returns {name: stats dict}."""
    names = list(fns)
    inner = {}
    for name in names:
        warm_up(fns[name], warmup)
        inner[name] = calibrate(fns[name], min_time)
    samples = {name: [] for name in names}
    busy = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    gc_was_enabled = gc.isenabled()
    try:
        for _ in range(rounds):
            for i in rng.permutation(len(names)):
                name = names[i]
                fn, n = fns[name], inner[name]
                if settle:
                    settle_threads(settle)
                fn()  # untimed: wakes this implementation's own threads (steady state, as in a loop)
                gc.disable()
                c0 = process_time()
                t0 = perf_counter()
                for _ in range(n):
                    fn()
                t1 = perf_counter()
                c1 = process_time()
                if gc_was_enabled:
                    gc.enable()
                samples[name].append((t1 - t0) / n)
                busy[name].append((c1 - c0) / (t1 - t0))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: summarize(samples[name], inner[name], busy[name]) for name in names}


def summarize(per_call: list, inner: int, busy: list) -> dict:
    a = np.asarray(per_call)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median_s": float(med),
        "q1_s": float(q1),
        "q3_s": float(q3),
        "iqr_s": float(q3 - q1),
        "min_s": float(a.min()),
        "rounds": len(per_call),
        "inner": inner,
        "busy_cores": float(np.median(busy)),
        "samples_s": [float(v) for v in per_call],
    }
