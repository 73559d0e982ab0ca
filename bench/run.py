"""csoftmax benchmark: csoftmax (exact and fast) against NumPy, SciPy, PyTorch, ONNX Runtime,
numba and JAX, at 1 thread and at all cores.

    pip install -e ".[bench]"
    python -m bench                       # full run -> bench/results/bench.{md,json,png}
    python -m bench --quick               # fewer rounds, about a third of the time
    python -m bench --threads 1 --cases 1000x1000
    python -m bench.figures               # the eight figures of issue 3 from bench/results/bench.json
    python -m bench.latency               # 10-element call latency distribution only

Every thread count runs in its own worker process (see bench/worker.py). Peers that are not
installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import cases as cases_mod
from bench import figures, report, sysinfo
from bench.sysinfo import REPO_ROOT

JAX_ONE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def parse_threads(spec: str) -> list[int]:
    ncpu = len(sysinfo.usable_cpus())
    counts = []
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        n = ncpu if part in ("all", "max") else int(part)
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread count {n} < 1")
        if n not in counts:
            counts.append(n)
    return counts


def worker_env(threads: int) -> dict:
    env = os.environ.copy()
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    if threads == 1:
        # JAX reads its XLA flags once, at start-up: the reason each thread count has its own process.
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + JAX_ONE_THREAD_FLAGS).strip()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark csoftmax against its peers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Cases:\n" + "\n".join(f"  {c.id}" for c in cases_mod.CASES),
    )
    p.add_argument(
        "--threads",
        default="1,all",
        help="comma-separated thread counts; 'all' = usable CPUs (default: 1,all)",
    )
    p.add_argument(
        "--cases",
        default=None,
        help="comma-separated substrings or globs of case ids (default: all)",
    )
    p.add_argument(
        "--impls",
        default=None,
        help="comma-separated implementations to run (default: all installed)",
    )
    p.add_argument("--quick", action="store_true", help="5 rounds, 1 ms timings, 20k latency calls")
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds per case (default 15; quick 5)"
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds per timing (default 0.002; quick 0.001)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=0.002,
        help="before each timing, sleep in steps of this many s until the process is idle (other threads stopped spinning; at most 0.2 s; default 0.002)",
    )
    p.add_argument(
        "--latency-calls",
        type=int,
        default=None,
        help="calls per implementation (default 100000; quick 20000)",
    )
    p.add_argument(
        "--no-latency", action="store_true", help="skip the 10-element latency distribution"
    )
    p.add_argument("--no-accuracy", action="store_true", help="skip the ULP measurement")
    p.add_argument(
        "--no-pairs",
        action="store_true",
        help="skip the paired ratios of figures 4 and 5 (bench/pairs.py)",
    )
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each case, wait up to S seconds for other processes to go idle (default 0)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not restrict each worker to as many CPUs as threads",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--out",
        default=str(REPO_ROOT / "bench" / "results"),
        help="output folder (default bench/results)",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the cases and which implementations are installed, then exit",
    )
    return p


def list_and_exit() -> int:
    from bench import peers

    for c in cases_mod.CASES:
        print(f"{c.id:45s} {c.label}")
    impls, skipped = peers.load_impls(log=lambda *a, **k: None)
    print("\ninstalled:", ", ".join(f"{i.name} {i.version}" for i in impls))
    for name, reason in skipped.items():
        print(f"skipped: {name}: {reason}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        return list_and_exit()
    rounds = args.rounds or (5 if args.quick else 15)
    min_time = args.min_time or (0.001 if args.quick else 0.002)
    latency_calls = args.latency_calls or (20_000 if args.quick else 100_000)
    warmup = 0.02 if args.quick else 0.05
    thread_counts = parse_threads(args.threads)
    selected = cases_mod.select(args.cases)
    if not selected:
        print(f"no case matches {args.cases!r}; see python -m bench --list", file=sys.stderr)
        return 2
    pin = not args.no_pin and hasattr(os, "sched_setaffinity")
    if args.impls:
        from bench.peers import all_impls

        known = [i.name for i in all_impls()]
        unknown = [n for n in args.impls.split(",") if n not in known]
        if unknown:
            print(f"unknown implementation(s) {unknown}; choose from {known}", file=sys.stderr)
            return 2

    data = {
        "schema": "csoftmax-bench/1",
        "created": report.now_iso(),
        "command": " ".join(["python -m bench"] + (sys.argv[1:] if argv is None else list(argv))),
        "settings": {
            "rounds": rounds,
            "min_time": min_time,
            "warmup": warmup,
            "settle": args.settle,
            "latency_calls": None if args.no_latency else latency_calls,
            "pin": pin,
            "wait_idle": args.wait_idle,
            "thread_counts": thread_counts,
            "cases": [c.id for c in selected],
            "jax_one_thread_flags": JAX_ONE_THREAD_FLAGS,
        },
        "machine": sysinfo.machine(),
        "git": sysinfo.git_info(),
        "runs": [],
    }
    print(
        f"csoftmax benchmark: {len(selected)} cases, threads {thread_counts}, {rounds} rounds, "
        f"timings >= {min_time * 1e3:g} ms, CPU {data['machine']['cpu_model']} ({data['machine']['usable_cpus']} usable)",
        flush=True,
    )
    with sysinfo.BackgroundLoad() as load:
        time.sleep(1.0)
    data["background_cpu_at_start"] = load.fraction
    if load.fraction is not None and load.fraction > 0.1:
        print(
            f"WARNING: other processes are using {load.fraction:.0%} of the CPUs: timings will be "
            "noisy (see --wait-idle)",
            flush=True,
        )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="csoftmax-bench-") as tmp:
        for threads in thread_counts:
            out_json = Path(tmp) / f"run-{threads}.json"
            cmd = [
                sys.executable, "-m", "bench.worker",
                "--threads", str(threads),
                "--rounds", str(rounds),
                "--min-time", str(min_time),
                "--warmup", str(warmup),
                "--settle", str(args.settle),
                "--latency-calls", str(latency_calls),
                "--json", str(out_json),
            ]  # fmt: skip
            if args.cases:
                cmd += ["--cases", args.cases]
            if args.impls:
                cmd += ["--impls", args.impls]
            if args.no_latency:
                cmd.append("--no-latency")
            if args.no_accuracy:
                cmd.append("--no-accuracy")
            if args.no_pairs:
                cmd.append("--no-pairs")
            if pin:
                cmd.append("--pin")
            if args.wait_idle:
                cmd += ["--wait-idle", str(args.wait_idle)]
            print(f"\n--- worker: {threads} thread(s) ---", flush=True)
            proc = subprocess.run(cmd, env=worker_env(threads))
            if proc.returncode != 0 or not out_json.exists():
                print(
                    f"WARNING: the {threads}-thread worker failed (exit {proc.returncode}); no results for it",
                    flush=True,
                )
                continue
            data["runs"].append(json.loads(out_json.read_text()))
    data["wall_s"] = time.time() - started
    if not data["runs"]:
        print("no worker produced results", file=sys.stderr)
        return 1
    paths = report.write_all(data, Path(args.out), make_plot=not args.no_plot)
    md = paths["md"].read_text()
    print("\n" + md)
    print(figures.summary(data))
    print("\nwrote " + ", ".join(str(p) for p in paths.values()) + f"  ({data['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
