"""Cross-entropy and segment softmax against what people write today.

    python -m bench.losses [--threads 1,2] [--rounds 5]

cross_entropy on (4096, 32000) float32 logits with int64 class targets, mean reduction:
  csoftmax.cross_entropy                     the fused kernel (no log_softmax array)
  log_softmax + gather                       -take_along_axis(csoftmax.log_softmax(x), t).mean()
  torch                                      torch.nn.functional.cross_entropy(from_numpy(x), t)
cross_entropy(return_grad=True) against torch's forward + backward on the same problem.
segment_softmax on 10^6 float64 (then float32) rows cut into 10^4 ragged segments (lengths
uniform in 1..199):
  csoftmax.segment_softmax
  python loop                                csoftmax.softmax of every x[a:b] into a preallocated out
  numpy reduceat                             maximum.reduceat, repeat, exp, add.reduceat, in place
Each result is checked against csoftmax's before it is timed; times are medians of interleaved
rounds (bench/timing.py); the ratio is the peer's time over csoftmax's (> 1: csoftmax is faster).
Threads: csoftmax.set_num_threads and torch.set_num_threads; the NumPy formulations run on one.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

import csoftmax

from .timing import measure


def cross_entropy_case(rng):
    logits = rng.standard_normal((4096, 32000), dtype=np.float32) * 4
    target = rng.integers(0, 32000, 4096)
    impls = {
        "csoftmax.cross_entropy": lambda: csoftmax.cross_entropy(logits, target),
        "log_softmax + gather": lambda: (
            -np.take_along_axis(
                csoftmax.log_softmax(logits, axis=-1), target[:, None], axis=-1
            ).mean(dtype=np.float64)
        ),
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        x, t = torch.from_numpy(logits), torch.from_numpy(target)
        impls["torch"] = lambda: float(torch.nn.functional.cross_entropy(x, t))
    return "cross_entropy (4096, 32000) float32", logits.size, impls, torch


def cross_entropy_grad_case(rng):
    logits = rng.standard_normal((4096, 32000), dtype=np.float32) * 4
    target = rng.integers(0, 32000, 4096)
    impls = {
        "csoftmax.cross_entropy(return_grad=True)": lambda: csoftmax.cross_entropy(
            logits, target, return_grad=True
        )[1],
    }
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        t = torch.from_numpy(target)

        def torch_backward():
            x = torch.from_numpy(logits).requires_grad_()
            torch.nn.functional.cross_entropy(x, t).backward()
            return x.grad.numpy()

        impls["torch forward + backward"] = torch_backward
    return "cross_entropy + grad (4096, 32000) float32", logits.size, impls, torch


def numpy_segment_softmax(x, indptr):
    """The best vectorised NumPy formulation we know (empty segments dropped for reduceat)."""
    lengths = np.diff(indptr)
    keep = lengths > 0
    starts, lengths = indptr[:-1][keep], lengths[keep]
    shifted = x - np.repeat(np.maximum.reduceat(x, starts), lengths)
    e = np.exp(shifted, out=shifted)
    e /= np.repeat(np.add.reduceat(e, starts), lengths)
    return e


def segment_case(rng, dtype=np.float64):
    lengths = rng.integers(1, 200, 10_000)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indptr = indptr * 1_000_000 // indptr[-1]  # exactly 10^6 rows
    x = (rng.standard_normal(1_000_000) * 4).astype(dtype)
    bounds = list(zip(indptr[:-1].tolist(), indptr[1:].tolist()))
    out = np.empty_like(x)

    def python_loop():
        for a, b in bounds:
            out[a:b] = csoftmax.softmax(x[a:b])
        return out

    impls = {
        "csoftmax.segment_softmax": lambda: csoftmax.segment_softmax(x, indptr),
        "python loop": python_loop,
        "numpy reduceat": lambda: numpy_segment_softmax(x, indptr),
    }
    name = np.dtype(dtype).name
    return f"segment_softmax 10^6 {name} rows, 10^4 segments", x.size, impls, None


def check(impls):
    results = {name: np.asarray(fn()) for name, fn in impls.items()}
    first = next(iter(results.values()))
    for name, value in results.items():
        if not np.allclose(value, first, rtol=1e-5, atol=1e-9):
            raise SystemExit(f"{name} disagrees with csoftmax: {value} vs {first}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    config = csoftmax.show_config(mode="dicts")
    print(
        f"csoftmax {config['version']} backend={config['backend']} isa={config['isa']} "
        f"numpy {np.__version__} on {platform.machine()}"
    )
    print("| case | implementation | threads | median ms | Melem/s | ratio vs csoftmax |")
    print("|---|---|---|---|---|---|")
    cases = (
        cross_entropy_case,
        cross_entropy_grad_case,
        segment_case,
        lambda rng: segment_case(rng, np.float32),
    )
    for make in cases:
        title, elements, impls, torch = make(rng)
        check(impls)
        for count in threads:
            csoftmax.set_num_threads(count)
            if torch is not None:
                torch.set_num_threads(count)
            stats = measure(impls, rounds=args.rounds, min_time=0.2, warmup=0.3, settle=0.05)
            ours = stats[next(iter(impls))]["median_s"]
            for name, s in stats.items():
                median = s["median_s"]
                print(
                    f"| {title} | {name} | {count} | {median * 1e3:.2f} | "
                    f"{elements / median / 1e6:.0f} | {median / ours:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
