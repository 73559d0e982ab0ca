"""Cost of the issue-5 features against plain softmax, in one interleaved run.

    python -m bench.features [--rounds 15] [--threads 1] [--out bench/results/features.md]

Per shape (float32 and float64): csoftmax.softmax plain; with ``where=`` (a random mask, 10%
excluded); with ``temperature=0.7``; softmax_backward and log_softmax_backward given a forward
output; and the NumPy formulas of the two backward passes (``y * (g - (g * y).sum(axis,
keepdims=True))`` and ``g - np.exp(y) * g.sum(axis, keepdims=True)``). Ratios are times divided by
the plain softmax time of the same shape (the issue's targets: where / temperature <= 1.15,
backward <= 1.2) and NumPy formula time divided by csoftmax's (target >= 3).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from .timing import measure

SHAPES = [((1000, 1000), -1), ((1000, 1000), 0), ((4096, 4096), -1), ((100000, 10), -1)]


def cases(dtype, shape, axis, rng):
    import csoftmax

    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    where = rng.random(shape) > 0.1
    y = csoftmax.softmax(x, axis=axis)
    logy = csoftmax.log_softmax(x, axis=axis)
    out = np.empty_like(x)
    return {
        "softmax": lambda: csoftmax.softmax(x, axis=axis, out=out),
        "softmax where=": lambda: csoftmax.softmax(x, axis=axis, where=where, out=out),
        "softmax temperature=0.7": lambda: csoftmax.softmax(x, axis=axis, temperature=0.7, out=out),
        "log_softmax": lambda: csoftmax.log_softmax(x, axis=axis, out=out),
        "log_softmax where=": lambda: csoftmax.log_softmax(x, axis=axis, where=where, out=out),
        "softmax_backward": lambda: csoftmax.softmax_backward(g, y, axis=axis, out=out),
        "log_softmax_backward": lambda: csoftmax.log_softmax_backward(g, logy, axis=axis, out=out),
        "numpy softmax_backward": lambda: y * (g - (g * y).sum(axis, keepdims=True)),
        "numpy log_softmax_backward": lambda: g - np.exp(logy) * g.sum(axis, keepdims=True),
    }


RATIOS = [  # (name, against, target, how)
    ("softmax where=", "softmax", 1.15, "<="),
    ("softmax temperature=0.7", "softmax", 1.15, "<="),
    ("log_softmax where=", "log_softmax", 1.15, "<="),
    ("softmax_backward", "softmax", 1.2, "<="),
    ("log_softmax_backward", "softmax", 1.2, "<="),
    ("numpy softmax_backward", "softmax_backward", 3.0, ">="),
    ("numpy log_softmax_backward", "log_softmax_backward", 3.0, ">="),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join("bench", "results", "features.md"))
    args = parser.parse_args(argv)
    import csoftmax

    csoftmax.set_num_threads(args.threads)
    config = csoftmax.show_config(mode="dicts")
    rng = np.random.default_rng(0)
    lines = [
        "# Issue 5 features: cost against plain softmax",
        "",
        f"csoftmax {config['version']}, backend {config['backend']}, isa {config['isa']}, "
        f"{args.threads} thread(s), {args.rounds} interleaved rounds, medians.",
        "",
        "| dtype | shape | axis | function | time | ratio | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dtype in (np.float32, np.float64):
        for shape, axis in SHAPES:
            stats = measure(
                cases(dtype, shape, axis, rng),
                rounds=args.rounds,
                min_time=0.02,
                warmup=0.05,
                settle=0.0005,
            )
            time = {name: s["median_s"] for name, s in stats.items()}
            for name, against, target, how in RATIOS:
                if how == "<=":
                    ratio = time[name] / time[against]
                    label = f"{ratio:.2f}x {against}"
                    ok = ratio <= target
                else:
                    ratio = time[name] / time[against]
                    label = f"{against} {ratio:.1f}x faster"
                    ok = ratio >= target
                lines.append(
                    f"| {np.dtype(dtype).name} | {shape} | {axis} | {name} | "
                    f"{time[name] * 1e3:.3f} ms | {label} | {how} {target} | "
                    f"{'PASS' if ok else 'FAIL'} |"
                )
            print("\n".join(lines[-len(RATIOS) :]), flush=True)
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
