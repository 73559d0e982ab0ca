"""The README's figures on softmax itself, drawn with csoftmax (issue 5's seed material).

    python docs/make_figures.py          # writes docs/img/*.png

Needs the `docs` extra (matplotlib). The output is deterministic: no
timestamps or version strings in the PNGs, fixed sizes and inputs.
"""

from __future__ import annotations

import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's csoftmax first
import csoftmax  # noqa: E402

IMG = os.path.join(HERE, "img")
DTYPES = (np.float16, np.float32, np.float64)
COLOURS = {np.float16: "tab:green", np.float32: "tab:orange", np.float64: "tab:blue"}
plt.rcParams.update(
    {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "csoftmax"}
)


def underflow_thresholds(dtype):
    """x_i - max below which softmax_i is subnormal, and below which it is exactly 0."""
    info = np.finfo(dtype)
    return math.log(float(info.tiny)), math.log(float(info.smallest_subnormal)) - math.log(2)


def save(figure, name):
    path = os.path.join(IMG, name)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) // 1024} KiB)")


def sweep_figure():
    """softmax of [t, 0, -1] as t sweeps, and logits vs probabilities at three temperatures."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    t = np.linspace(-6, 6, 241)
    rows = np.stack([t, np.zeros_like(t), -np.ones_like(t)], axis=1)
    p = csoftmax.softmax(rows, axis=1)
    for k, label in enumerate(["$p_0$ (logit $t$)", "$p_1$ (logit 0)", "$p_2$ (logit $-1$)"]):
        left.plot(t, p[:, k], label=label)
    left.set(
        title="softmax([t, 0, -1]) as t sweeps",
        xlabel="t",
        ylabel="probability",
        ylim=(-0.02, 1.02),
    )
    left.legend(loc="center left")

    logits = np.array([2.0, 1.0, 0.1, -0.5, -1.2])
    positions = np.arange(len(logits))
    width = 0.26
    for shift, temperature in zip((-1, 0, 1), (0.5, 1.0, 2.0)):
        probabilities = csoftmax.softmax(logits, temperature=temperature)
        right.bar(
            positions + shift * width, probabilities, width, label=f"temperature={temperature:g}"
        )
    right.set(
        title=f"logits {logits.tolist()} -> probabilities",
        xlabel="class",
        ylabel="probability",
        xticks=positions,
    )
    right.legend()
    save(figure, "softmax_sweep.png")


def two_class_figure():
    """softmax([x, 0])[0] is the logistic sigmoid 1 / (1 + exp(-x))."""
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.5, 4.4), sharex=True, layout="constrained", height_ratios=(2, 1)
    )
    x = np.linspace(-10, 10, 801)
    first = csoftmax.softmax(np.stack([x, np.zeros_like(x)], axis=1), axis=1)[:, 0]
    sigmoid = 1 / (1 + np.exp(-x))
    top.plot(x, first, lw=3, alpha=0.5, label="softmax([x, 0])[0]  (csoftmax)")
    top.plot(x, sigmoid, "k--", lw=1, label="1 / (1 + exp(-x))")
    top.set(
        title="Two classes: softmax is the logistic sigmoid of the difference", ylabel="probability"
    )
    top.legend()
    with np.errstate(divide="ignore", invalid="ignore"):
        ulps = np.abs(first - sigmoid) / np.spacing(sigmoid)
    bottom.plot(x, ulps, ".", ms=2)
    bottom.set(xlabel="x", ylabel="difference (ULP)", ylim=(-0.2, 4.2))
    save(figure, "two_class.png")


def underflow_figure():
    """Can a softmax output be 0? In floating point, yes: log_softmax keeps the information."""
    figure, axes = plt.subplots(1, 3, figsize=(10, 3.4), layout="constrained")
    for axis, dtype in zip(axes, DTYPES):
        subnormal_below, zero_below = underflow_thresholds(dtype)
        t = np.linspace(0, -zero_below * 1.15, 1201)
        rows = np.stack([np.zeros_like(t), -t], axis=1).astype(dtype)
        p = csoftmax.softmax(rows, axis=1)[:, 1].astype(np.float64)
        log_p = csoftmax.log_softmax(rows, axis=1)[:, 1].astype(np.float64)
        name = np.dtype(dtype).name
        with np.errstate(divide="ignore"):
            axis.plot(t, np.log10(p), color=COLOURS[dtype], lw=3, alpha=0.6, label="log10 softmax")
        axis.plot(t, log_p / math.log(10), "k--", lw=1, label="log_softmax / ln 10")
        lowest = -t[-1] / math.log(10) * 1.05
        zero = np.flatnonzero(p == 0)[::40]
        axis.plot(
            t[zero],
            np.full(len(zero), lowest * 0.96),
            "x",
            color="tab:red",
            ms=4,
            label="softmax == 0",
        )
        axis.axvspan(
            -subnormal_below, -zero_below, color="0.85", label="subnormal (may flush to 0)"
        )
        axis.axvline(-zero_below, color="tab:red", ls=":", lw=1)
        axis.set(
            title=f"{name}: 0 once x - max < {zero_below:.2f}",
            xlabel="t = max - x",
            ylim=(lowest, 0.5),
        )
    axes[0].set_ylabel("log10 of softmax([0, -t])[1]")
    axes[0].legend(loc="lower left", fontsize=7)
    figure.suptitle(
        "Mathematically softmax is never 0; in floating point it is, far below the "
        "maximum -- log_softmax keeps the value"
    )
    save(figure, "underflow.png")


def main():
    os.makedirs(IMG, exist_ok=True)
    sweep_figure()
    two_class_figure()
    underflow_figure()
    for dtype in DTYPES:
        subnormal_below, zero_below = underflow_thresholds(dtype)
        print(
            f"{np.dtype(dtype).name}: subnormal below x - max = {subnormal_below:.2f}, "
            f"exactly 0 below {zero_below:.2f}"
        )


if __name__ == "__main__":
    main()
