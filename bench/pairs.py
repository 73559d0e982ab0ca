"""Ratios between two csoftmax calls, timed alternately in the same rounds (figures 4 and 5).

Figure 5 compares axis=0 with axis=-1 of one float64 (1000, 1000) array, figure 4 one
(1, 10_000_000) float32 row at 1 thread with the same row at every thread. As benchmark cases
those are timed seconds to minutes apart (figure 4 even in another process), and on a shared
machine whose speed drifts by tens of percent between minutes the ratio of two such medians moves
with the drift. Here both sides of a ratio run in the same interleaved rounds (bench/timing.py), so a
drift hits both alike; the ratio reported is the median of the per-round ratios.
"""

from __future__ import annotations

import numpy as np

from . import timing
from .cases import Case

AXES_CASE = Case("softmax", (1000, 1000), "float64", 0)
LONG_ROW_CASE = Case("softmax", (1, 10_000_000), "float32", -1)
MODES = ("exact", "fast")


def _ratio(stats: dict, numerator: str, denominator: str) -> dict:
    """Median of the per-round ratios (round k of one side against round k of the other)."""
    a = np.asarray(stats[numerator]["samples_s"])
    b = np.asarray(stats[denominator]["samples_s"])
    per_round = a / b
    q1, med, q3 = np.percentile(per_round, [25, 50, 75])
    return {
        "numerator": numerator,
        "denominator": denominator,
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "numerator_median_s": stats[numerator]["median_s"],
        "denominator_median_s": stats[denominator]["median_s"],
    }


def _measure(fns: dict, args, seed: int) -> dict:
    return timing.measure(
        fns,
        rounds=args.rounds,
        min_time=args.min_time,
        warmup=args.warmup,
        settle=args.settle,
        seed=seed,
    )


def axes(csoftmax, args) -> dict:
    """{mode: ratio of axis=0 to axis=-1} for the figure-5 array, both modes in one set of rounds."""
    x = AXES_CASE.make_input()
    fns = {}
    for mode in MODES:
        fns[f"{mode} axis 0"] = lambda m=mode: csoftmax.softmax(x, axis=0, precision=m)
        fns[f"{mode} axis -1"] = lambda m=mode: csoftmax.softmax(x, axis=-1, precision=m)
    stats = _measure(fns, args, AXES_CASE.seed)
    return {mode: _ratio(stats, f"{mode} axis 0", f"{mode} axis -1") for mode in MODES}


def threads(csoftmax, args, most: int) -> dict:
    """{mode: ratio of the 1-thread time to the `most`-thread time} for the figure-4 row."""
    x = LONG_ROW_CASE.make_input()

    def call(mode, count):
        csoftmax.set_num_threads(count)
        return csoftmax.softmax(x, axis=-1, precision=mode)

    fns = {}
    for mode in MODES:
        fns[f"{mode} 1 thread"] = lambda m=mode: call(m, 1)
        fns[f"{mode} {most} threads"] = lambda m=mode: call(m, most)
    try:
        stats = _measure(fns, args, LONG_ROW_CASE.seed)
    finally:
        csoftmax.set_num_threads(most)
    return {mode: _ratio(stats, f"{mode} 1 thread", f"{mode} {most} threads") for mode in MODES}


def measure(threads_count: int, args, log) -> dict:
    """The paired ratios of one worker (the thread pair only where it has several threads);
    the worker calls it only where csoftmax loaded."""
    import csoftmax

    log("paired ratios (figures 4 and 5) ...")
    record = {"axes": axes(csoftmax, args)}
    if threads_count > 1:
        record["threads"] = threads(csoftmax, args, threads_count)
    for name, ratios in record.items():
        text = ", ".join(f"{mode} {r['median']:.2f}×" for mode, r in ratios.items())
        log(f"  {name}: {text}")
    return record
