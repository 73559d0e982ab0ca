"""Latency of one small call: the distribution of single-call times for a 10-element softmax.

Every call is timed on its own with ``time.perf_counter_ns``; implementations are interleaved in
blocks of calls until each has made ``calls`` calls. The harness's own cost (two clock reads and
one call of an empty Python function) is measured the same way and reported; the "raw" numbers
include it, the "net" numbers have its median subtracted.

    python -m bench.latency [--calls 100000] [--threads 1] [--dtype float64,float32]
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from .cases import Case

perf_counter_ns = time.perf_counter_ns


def _time_block(fn, n: int, sink: np.ndarray, start: int) -> None:
    for i in range(start, start + n):
        t0 = perf_counter_ns()
        fn()
        t1 = perf_counter_ns()
        sink[i] = t1 - t0


def measure(fns: dict, calls: int = 100_000, block: int = 1000, seed: int = 0) -> dict:
    """{name: {"median_ns", "p10_ns", "p90_ns", ...}} for the callables of ``fns`` plus "harness"."""
    fns = dict(fns)
    fns["harness"] = lambda: None
    for fn in fns.values():  # warm-up
        for _ in range(200):
            fn()
    times = {name: np.empty(calls, dtype=np.int64) for name in fns}
    done = dict.fromkeys(fns, 0)
    rng = np.random.default_rng(seed)
    names = list(fns)
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while any(done[n] < calls for n in names):
            for i in rng.permutation(len(names)):
                name = names[i]
                n = min(block, calls - done[name])
                if n > 0:
                    _time_block(fns[name], n, times[name], done[name])
                    done[name] += n
    finally:
        if gc_was_enabled:
            gc.enable()
    harness = float(np.median(times["harness"]))
    out = {}
    for name, t in times.items():
        p10, p50, p90 = np.percentile(t, [10, 50, 90])
        out[name] = {
            "median_ns": float(p50),
            "p10_ns": float(p10),
            "p90_ns": float(p90),
            "mean_ns": float(t.mean()),
            "net_median_ns": float(p50 - harness) if name != "harness" else float(p50),
            "calls": int(calls),
        }
    return out


def run(impls, dtypes=("float64", "float32"), calls=100_000, log=print) -> dict:
    """Latency of every (non-reference) implementation on a (10,) array of each dtype."""
    result = {"calls": calls, "dtypes": {}}
    for dt in dtypes:
        case = Case("softmax", (10,), dt, -1)
        x = case.make_input()
        fns = {"x.copy()": x.copy}
        for impl in impls:
            if impl.kind == "reference":
                continue
            try:
                fns[impl.name] = impl.prepare(case, x)
            except Exception as exc:
                log(f"note: latency: {impl.name} skipped ({exc})")
        log(f"latency {dt}: {len(fns)} callables x {calls} calls ...", flush=True)
        result["dtypes"][dt] = measure(fns, calls=calls)
    return result


def format_table(result: dict) -> str:
    lines = []
    for dt, table in result["dtypes"].items():
        lines.append(
            f"\n10-element {dt} call, {result['calls']} calls each (ns; net = median - harness median)"
        )
        lines.append(f"{'implementation':<18} {'median':>9} {'p10':>9} {'p90':>9} {'net':>9}")
        for name, s in sorted(table.items(), key=lambda kv: kv[1]["median_ns"]):
            lines.append(
                f"{name:<18} {s['median_ns']:>9.0f} {s['p10_ns']:>9.0f} {s['p90_ns']:>9.0f} {s['net_median_ns']:>9.0f}"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    from . import peers
    from .worker import apply_threads, banner

    parser = argparse.ArgumentParser(
        prog="python -m bench.latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--calls", type=int, default=100_000, help="calls per implementation (default 100000)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="thread knob given to every implementation"
    )
    parser.add_argument("--dtype", default="float64,float32")
    args = parser.parse_args(argv)
    impls, skipped = peers.load_impls()
    apply_threads(impls, args.threads)
    print(banner(impls))
    result = run(impls, dtypes=args.dtype.split(","), calls=args.calls)
    print(format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
