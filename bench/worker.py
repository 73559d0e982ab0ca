"""One thread count's benchmark run, in its own process (started by ``python -m bench``).

A separate process per thread count is needed because some settings only take at process start
(JAX's XLA flags, OpenMP's environment, the CPU affinity) and so that the thread pools of one run
(OpenMP, ONNX Runtime, numba, XLA) cannot leak into the next.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import time

import numpy as np

ENV_KEYS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "XLA_FLAGS",
    "CSOFTMAX_BACKEND",
    "CSOFTMAX_ISA",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
)


def log(*args, **kwargs):
    kwargs.setdefault("flush", True)
    print(*args, **kwargs)


def apply_threads(impls, threads: int) -> dict:
    notes = {}
    for impl in impls:
        try:
            impl.set_threads(threads)
        except Exception as exc:
            notes[impl.name] = f"set_threads({threads}) failed: {type(exc).__name__}: {exc}"
            log(f"note: {impl.name}: {notes[impl.name]}")
    return notes


def banner(impls) -> str:
    """The csoftmax line of the output; loud when the native kernel is not what runs."""
    from .sysinfo import csoftmax_config

    info = csoftmax_config()
    if not info["importable"]:
        return _loud(f"csoftmax is not importable ({info['error']}): only the peers are timed")
    cfg = info.get("config") or {}
    backend = cfg.get("backend", "unknown")
    line = (
        f"csoftmax {cfg.get('version', '?')} from {info.get('file')}: backend={backend} "
        f"isa={cfg.get('isa')} isas={cfg.get('isas')} openmp={cfg.get('openmp')} num_threads={cfg.get('num_threads')}"
    )
    if backend != "c":
        return (
            _loud(
                f"csoftmax backend: {backend} -- the native kernel is NOT in use; csoftmax timings below "
                f"are those of the pure-NumPy fallback"
            )
            + "\n"
            + line
        )
    return line


def _loud(text: str) -> str:
    bar = "!" * 100
    return f"{bar}\n!! {text}\n{bar}"


# ------------------------------------------------------------------------------------------------
# validation: every implementation's result is checked before it is timed


def reference(case, x):
    x64 = x.astype(np.float64)
    s = x64 - x64.max(axis=case.axis, keepdims=True)
    if case.op == "softmax":
        e = np.exp(s)
        return e / e.sum(axis=case.axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=case.axis, keepdims=True))


def check(case, y, ref) -> tuple[bool, str, float]:
    """(valid, message, error): a wrong result is a harness bug or a broken peer, never timed."""
    y = np.asarray(y)
    if y.shape != tuple(case.shape):
        return False, f"shape {y.shape}", float("nan")
    if y.dtype != np.dtype(case.dtype):
        return False, f"dtype {y.dtype} instead of {case.dtype}", float("nan")
    if not np.isfinite(y).all():
        return False, "non-finite values", float("nan")
    diff = np.abs(y.astype(np.float64) - ref)
    if case.op == "softmax":
        floor = 2.0**-100 if case.dtype == "float32" else 2.0**-1000
        err = float((diff / (ref + floor)).max())
    else:
        err = float((diff / np.maximum(np.abs(ref), 1.0)).max())
    limit = 1e-2 if case.dtype == "float32" else 1e-8
    if err > limit:
        return False, f"relative error {err:.2e} > {limit:.0e}", err
    return True, "", err


def digest(y) -> str:
    return hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()[:20]


# ------------------------------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def run_case(case, impls, args) -> dict:
    from . import sysinfo, timing
    from .peers import Unsupported

    x = case.make_input()
    ref = reference(case, x)
    fns, skipped, invalid, validation, digests = {}, {}, {}, {}, {}
    for impl in impls:
        try:
            fn = impl.prepare(case, x)
        except Unsupported as exc:
            skipped[impl.name] = str(exc)
            continue
        except Exception as exc:
            skipped[impl.name] = f"error: {type(exc).__name__}: {exc}"[:300]
            log(f"  note: {impl.name} failed to prepare: {skipped[impl.name]}")
            continue
        if impl.kind != "reference":
            try:
                y = fn()
            except Exception as exc:
                skipped[impl.name] = f"error: {type(exc).__name__}: {exc}"[:300]
                log(f"  note: {impl.name} failed: {skipped[impl.name]}")
                continue
            ok, msg, err = check(case, y, ref)
            validation[impl.name] = {"max_rel_err": err, "ok": ok}
            if not ok:
                invalid[impl.name] = msg
                log(f"  WARNING: {impl.name} gives a wrong result ({msg}): not timed")
                continue
            if impl.kind == "csoftmax":
                digests[impl.name] = digest(y)
        fns[impl.name] = fn
    del ref
    idle_before = None
    if args.wait_idle > 0:
        idle_before = sysinfo.wait_until_idle(args.wait_idle, log=log)
    t0 = time.perf_counter()
    with sysinfo.BackgroundLoad() as background:
        stats = timing.measure(
            fns,
            rounds=args.rounds,
            min_time=args.min_time,
            warmup=args.warmup,
            settle=args.settle,
            seed=case.seed,
        )
    for name, s in stats.items():
        s["elements_per_s"] = case.elements / s["median_s"]
        s["gb_per_s"] = case.bytes_moved / s["median_s"] / 1e9
        if name in validation:
            s["validation"] = validation[name]
    elapsed = time.perf_counter() - t0
    order = sorted(stats, key=lambda n: stats[n]["median_s"])
    summary = ", ".join(f"{n} {fmt_time(stats[n]['median_s'])}" for n in order)
    bg = background.fraction
    bg_txt = f", other processes used {bg:.0%} of the CPUs" if bg is not None else ""
    log(f"  {case.id}: {summary}  [{elapsed:.1f} s{bg_txt}]")
    return {
        **case.to_dict(),
        "results": stats,
        "skipped": skipped,
        "invalid": invalid,
        "csoftmax_digest": digests,
        "background_cpu": bg,
        "background_cpu_before": idle_before,
        "wall_s": elapsed,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--cases", default=None)
    parser.add_argument("--impls", default=None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.002)
    parser.add_argument("--warmup", type=float, default=0.05)
    parser.add_argument("--settle", type=float, default=0.002)
    parser.add_argument("--latency-calls", type=int, default=100_000)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-pairs", action="store_true")
    parser.add_argument("--pin", action="store_true")
    parser.add_argument("--wait-idle", type=float, default=0.0)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)

    from . import accuracy, cases, latency, pairs, peers, sysinfo

    threads = args.threads
    pinned = None
    if args.pin and hasattr(os, "sched_setaffinity"):
        cpus = sysinfo.usable_cpus()
        pinned = cpus[:threads]
        os.sched_setaffinity(0, pinned)  # before any thread pool exists: every thread inherits it

    started = time.time()
    load0 = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    names = args.impls.split(",") if args.impls else None
    impls, skipped = peers.load_impls(names, log=log)
    thread_notes = apply_threads(impls, threads)
    # torch, jax and numba bring ~300k long-lived objects: move them out of the collector's way so
    # a collection between timings stays cheap (timings themselves run with the collector off).
    gc.collect()
    gc.freeze()
    csoftmax_info = sysinfo.csoftmax_config()  # at start: the build this worker imported
    log(banner(impls))
    log(
        f"== {threads} thread(s)"
        + (f", pinned to CPUs {pinned}" if pinned is not None else "")
        + f": {[i.name for i in impls]}"
    )

    results = []
    for case in cases.select(args.cases):
        results.append(run_case(case, impls, args))

    paired = None
    if not args.no_pairs and any(i.kind == "csoftmax" for i in impls):
        paired = pairs.measure(threads, args, log=log)
    acc = None
    if not args.no_accuracy:
        log("accuracy ...")
        acc = accuracy.measure(impls, log=log)
    lat = None
    if not args.no_latency:
        lat = latency.run(impls, calls=args.latency_calls, log=log)

    record = {
        "threads": threads,
        "pinned_cpus": pinned,
        "started": started,
        "wall_s": time.time() - started,
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        "loadavg_start": load0,
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {i.name: i.version for i in impls},
        "extra_versions": {
            k: v
            for i in impls
            for k, v in (
                ("onnx", getattr(i, "onnx_version", None)),
                ("jaxlib", getattr(i, "jaxlib_version", None)),
            )
            if v
        },
        "skipped_impls": skipped,
        "thread_settings": {i.name: i.threads_info() for i in impls},
        "thread_notes": thread_notes,
        "threadpools": sysinfo.threadpools(),
        "csoftmax": csoftmax_info,
        "cases": results,
        "accuracy": acc,
        "latency": lat,
        "pairs": paired,
    }
    end_info = sysinfo.csoftmax_config()
    if end_info.get("native_sha256") != csoftmax_info.get("native_sha256"):
        record["csoftmax_rebuilt_during_run"] = end_info.get("native_sha256")
        log("WARNING: the csoftmax extension file changed on disk while this worker ran")
    for impl in impls:
        impl.close()
    with open(args.json, "w") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
