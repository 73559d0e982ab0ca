"""Markdown tables and the PNG plot, made from the JSON of one benchmark run.

python -m bench.report bench/results/bench.json      # rewrites bench.md and bench.png beside it
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
from pathlib import Path

from .peers import COPY_NAMES, CSOFTMAX_NAMES, PEER_NAMES

IMPL_ORDER = CSOFTMAX_NAMES + PEER_NAMES + COPY_NAMES
OP_DTYPE_SHORT = {"float32": "f32", "float64": "f64"}


# ------------------------------------------------------------------------------------------------
# derived numbers (shared with figures.py)


def median(case: dict, name: str) -> float | None:
    r = case["results"].get(name)
    return r["median_s"] if r else None


def fastest_peer(case: dict, among=PEER_NAMES) -> tuple[str | None, float | None]:
    best = (None, None)
    for name in among:
        t = median(case, name)
        if t is not None and (best[1] is None or t < best[1]):
            best = (name, t)
    return best


def copy_floor(case: dict) -> tuple[str | None, float | None]:
    return fastest_peer(case, COPY_NAMES)


def rel_spread(case: dict, name: str) -> float | None:
    """Half the interquartile range as a fraction of the median."""
    r = case["results"].get(name)
    return r["iqr_s"] / 2 / r["median_s"] if r else None


def csoftmax_backend(data: dict) -> str:
    for run in data.get("runs", []):
        info = run.get("csoftmax") or {}
        if not info.get("importable"):
            return "not importable"
        return (info.get("config") or {}).get("backend", "unknown")
    return "unknown"


def run_case(run: dict, case_id: str) -> dict | None:
    for case in run["cases"]:
        if case["id"] == case_id:
            return case
    return None


# ------------------------------------------------------------------------------------------------
# formatting


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None or not math.isfinite(r) else f"{r:.2f}×"


def fmt_ulp(v) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return "inf"
    if v >= 1e5:
        return f"{v:.1e}"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _ulp(run: dict, impl: str, case: dict):
    acc = run.get("accuracy") or {}
    entry = (acc.get("results") or {}).get(impl, {}).get(f"{case['op']}-{case['dtype']}", {})
    return entry.get("max_ulp")


def _versions(data: dict) -> str:
    run = data["runs"][0]
    parts = []
    extra = run.get("extra_versions", {})
    for name in PEER_NAMES:
        v = run["versions"].get(name)
        if v is None:
            continue
        s = f"{name} {v}"
        if name == "onnxruntime" and "onnx" in extra:
            s += f" (onnx {extra['onnx']})"
        if name == "jax" and "jaxlib" in extra:
            s += f" (jaxlib {extra['jaxlib']})"
        parts.append(s)
    return ", ".join(parts)


def _busy_notes(run: dict) -> list[str]:
    """Implementations that kept more cores busy than the thread count they were given."""
    threads = run["threads"]
    seen = {}
    for case in run["cases"]:
        if case["elements"] < 100_000:
            continue  # fork-join and timer noise dominate small calls
        for name, r in case["results"].items():
            seen.setdefault(name, []).append(r["busy_cores"])
    notes = []
    for name, values in seen.items():
        values = sorted(values)
        mid = values[len(values) // 2]
        if mid > threads + 0.3:
            notes.append(
                f"{name} kept {mid:.2f} cores busy (median over the large cases) when given {threads}"
            )
    return notes


def build_mismatch(data: dict) -> str | None:
    """A warning when the workers did not all time the same csoftmax build."""
    digests = {
        r["threads"]: (r.get("csoftmax") or {}).get("native_sha256") for r in data.get("runs", [])
    }
    if len({d for d in digests.values() if d}) > 1:
        return f"the csoftmax extension changed between workers (sha256 by thread count: {digests})"
    rebuilt = [r["threads"] for r in data.get("runs", []) if r.get("csoftmax_rebuilt_during_run")]
    if rebuilt:
        return f"the csoftmax extension was rebuilt on disk during the {rebuilt}-thread worker(s)"
    return None


def backend_banner(data: dict) -> str | None:
    backend = csoftmax_backend(data)
    if backend == "c":
        return None
    if backend == "not importable":
        return "**csoftmax was not importable: only the peers were timed.**"
    return (
        f"**⚠ csoftmax backend: {backend}.** The native kernel was not in use: the csoftmax columns time "
        "the pure-NumPy fallback, not the C/SIMD kernel."
    )


def markdown(data: dict) -> str:
    m = data["machine"]
    run0 = data["runs"][0]
    cs = (run0.get("csoftmax") or {}).get("config") or {}
    out = ["# csoftmax benchmark", ""]
    banner = backend_banner(data)
    if banner:
        out += [f"> {banner}", ""]
    mismatch = build_mismatch(data)
    if mismatch:
        out += [f"> **⚠ {mismatch}**", ""]
    git = data.get("git") or {}
    commit = git.get("commit")
    commit = (
        (commit[:12] + (" (uncommitted changes)" if git.get("dirty") else ""))
        if commit
        else "unknown (no commit)"
    )
    s = data["settings"]
    skipped = run0.get("skipped_impls") or {}
    pinned = "pinned to as many CPUs as threads" if s.get("pin") else "not pinned"
    out += [
        "| | |",
        "|---|---|",
        f"| date | {data['created']} |",
        f"| commit | {commit} |",
        f"| CPU | {m.get('cpu_model')}, {m.get('usable_cpus')} usable CPUs, flags {' '.join(m.get('cpu_flags') or [])} |",
        f"| memory | {m.get('memory_gib')} GiB |",
        f"| Python, NumPy | {m.get('python')}, {m.get('numpy')} |",
        f"| csoftmax | {cs.get('version', '?')}: backend **{cs.get('backend', csoftmax_backend(data))}**, ISA **{cs.get('isa')}** "
        f"(usable: {', '.join(cs.get('isas') or []) or '—'}), OpenMP {cs.get('openmp')} |",
        f"| peers | {_versions(data)} |",
    ]
    if skipped:
        out.append("| skipped | " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + " |")
    out += [
        f"| method | {s['rounds']} interleaved rounds (random order per round), each timing ≥ {s['min_time'] * 1e3:g} ms of "
        f"back-to-back calls; median per call, ± = half the interquartile range; one process per thread count, {pinned} |",
        f"| command | `{data.get('command', '')}` |",
        "",
        "*vs peer* = fastest peer's time / csoftmax's time (> 1: csoftmax is faster); peers are NumPy, SciPy, "
        "PyTorch, ONNX Runtime, numba and JAX, conversions included. *vs copy* = csoftmax's time / the time to copy "
        "an array of the same size (1.00 = the memory-bandwidth floor; the faster of `np.copyto` and a threaded copy). "
        "GB/s counts bytes read + written (2 × the array). ULP = max error on rows spread over ±100 "
        "(see Accuracy), for the case's op and dtype. `out=` cases: every implementation writes into a preallocated array.",
        "",
    ]
    for run in data["runs"]:
        out += _run_tables(run)
    out += _pairs_table(data)
    out += _accuracy_table(data)
    out += _latency_table(data)
    return "\n".join(out) + "\n"


def _pairs_table(data: dict) -> list[str]:
    """The ratios bench/pairs.py timed alternately (figures 4 and 5), per worker."""
    rows = []
    for run in data["runs"]:
        for ratios in (run.get("pairs") or {}).values():
            for r in ratios.values():
                rows.append(
                    f"| {run['threads']} | {r['numerator']} / {r['denominator']} | "
                    f"{fmt_time(r['numerator_median_s'])} / {fmt_time(r['denominator_median_s'])} | "
                    f"{r['median']:.2f}× [{r['q1']:.2f}, {r['q3']:.2f}] |"
                )
    if not rows:
        return []
    return [
        "## Paired ratios",
        "",
        "Two csoftmax calls timed alternately in the same rounds (`bench/pairs.py`): axis=0 over "
        "axis=-1 of float64 (1000, 1000) (figure 5), and one float32 (1, 10_000_000) row at 1 thread "
        "over the same row at the worker's thread count (figure 4). Ratio = median of the per-round "
        "ratios [quartiles].",
        "",
        "| worker threads | calls | medians | ratio |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def _cell(case: dict, name: str) -> str:
    """Median per call ± half the interquartile range (as % of the median)."""
    v = median(case, name)
    if v is None:
        return "—"
    return f"{fmt_time(v)} ±{rel_spread(case, name) * 100:.0f}%"


def _ratio(a, b) -> str:
    return fmt_ratio(a / b if (a and b) else None)


def _summary_row(run: dict, case: dict) -> str:
    exact, fast = median(case, "csoftmax-exact"), median(case, "csoftmax-fast")
    peer, peer_time = fastest_peer(case)
    _, copy_time = copy_floor(case)
    r = case["results"].get("csoftmax-exact")
    ulps = " / ".join(
        fmt_ulp(_ulp(run, n, case)) for n in ("csoftmax-exact", "csoftmax-fast", peer or "")
    )
    cells = [
        case["label"],
        _cell(case, "csoftmax-exact"),
        _cell(case, "csoftmax-fast"),
        f"{peer} {fmt_time(peer_time)}" if peer else "—",
        _ratio(peer_time, exact),
        _ratio(peer_time, fast),
        fmt_time(copy_time),
        _ratio(exact, copy_time),
        f"{r['gb_per_s']:.1f}" if r else "—",
        f"{r['elements_per_s'] / 1e9:.3g}" if r else "—",
        ulps,
    ]
    return "| " + " | ".join(cells) + " |"


def _run_tables(run: dict) -> list[str]:
    t = run["threads"]
    title = f"{t} thread" + ("s" if t != 1 else "")
    cs_threads = {
        k: v.get("get_num_threads")
        for k, v in run.get("thread_settings", {}).items()
        if k.startswith("csoftmax")
    }
    cfg = (run.get("csoftmax") or {}).get("config") or {}
    out = [f"## {title}", ""]
    bgs = [c["background_cpu"] for c in run["cases"] if c.get("background_cpu") is not None]
    bg_txt = (
        f"other processes used {sorted(bgs)[len(bgs) // 2]:.0%} (median over cases, max {max(bgs):.0%}) "
        "of the machine's CPUs during the timings"
        if bgs
        else "background CPU use unknown"
    )
    out.append(
        f"csoftmax: backend {cfg.get('backend')}, ISA {cfg.get('isa')}, get_num_threads() = "
        f"{next(iter(cs_threads.values()), '—')}; {bg_txt}."
    )
    out.append("")
    out.append(
        "| case | csoftmax exact | csoftmax fast | fastest peer | exact vs peer | fast vs peer "
        "| copy | exact vs copy | exact GB/s | exact Gelem/s | ULP exact / fast / peer |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in run["cases"]:
        out.append(_summary_row(run, case))
    out.append("")
    names = [n for n in IMPL_ORDER if any(n in c["results"] for c in run["cases"])]
    out.append(
        f"<details><summary>All implementations, {title} (median per call ± half IQR)</summary>"
    )
    out.append("")
    out.append("| case | " + " | ".join(names) + " | others' CPU |")
    out.append("|---|" + "---|" * (len(names) + 1))
    for case in run["cases"]:
        pn, _ = fastest_peer(case)
        cells = []
        for n in names:
            v = median(case, n)
            if v is None:
                reason = case.get("invalid", {}).get(n) or case.get("skipped", {}).get(n)
                cells.append(
                    "wrong result" if n in case.get("invalid", {}) else ("n/a" if reason else "—")
                )
                continue
            txt = _cell(case, n)
            cells.append(f"**{txt}**" if n == pn else txt)
        bg = case.get("background_cpu")
        cells.append("—" if bg is None else f"{bg:.0%}")
        out.append(f"| {case['label']} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("</details>")
    out.append("")
    notes = _busy_notes(run)
    bad = [
        f"{c['label']}: {n} — {msg}"
        for c in run["cases"]
        for n, msg in c.get("invalid", {}).items()
    ]
    noisy = [c["label"] for c in run["cases"] if (c.get("background_cpu") or 0) > 0.1]
    if noisy:
        notes.append(
            "other processes used more than 10% of the CPUs while these cases were timed "
            "(their numbers are less reliable): " + ", ".join(noisy)
        )
    if notes or bad or run.get("thread_notes"):
        out.append("Notes:")
        out += [f"- {n}" for n in notes]
        out += [f"- wrong result, not timed: {b}" for b in bad]
        out += [f"- {k}: {v}" for k, v in (run.get("thread_notes") or {}).items()]
        out.append("")
    return out


def _accuracy_table(data: dict) -> list[str]:
    run = next((r for r in data["runs"] if r.get("accuracy")), None)
    if run is None:
        return []
    acc = run["accuracy"]
    keys = ["softmax-float32", "softmax-float64", "log_softmax-float32", "log_softmax-float64"]
    out = [
        "## Accuracy",
        "",
        f"Max (99th percentile) error in ULPs of the result's dtype on {acc['rows'][0]} rows × "
        f"{acc['rows'][1]} of N(0, 1) logits scaled to ±{acc['spread']:g}, against a "
        f"{acc['reference']} reference (results below the normal range left out). "
        "csoftmax's contract: ≤ 4 ULP in exact mode. The huge log_softmax maxima of the peers come "
        "from outputs near 0 (a row's dominant maximum: `-log(1 + tiny)`), where `log(sum)` keeps "
        "no relative accuracy; the contract asks for `log1p` there.",
        "",
        "| implementation | softmax f32 | softmax f64 | log_softmax f32 | log_softmax f64 |",
        "|---|---|---|---|---|",
    ]
    for name in IMPL_ORDER:
        entry = acc["results"].get(name)
        if entry is None:
            continue
        cells = []
        for k in keys:
            e = entry.get(k, {})
            if "error" in e:
                cells.append("error")
            elif "max_ulp" in e:
                cells.append(f"{fmt_ulp(e['max_ulp'])} ({fmt_ulp(e.get('p99_ulp'))})")
            else:
                cells.append("—")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def _latency_table(data: dict) -> list[str]:
    out = []
    for run in data["runs"]:
        lat = run.get("latency")
        if not lat:
            continue
        dts = list(lat["dtypes"])
        names = [n for n in ["x.copy()"] + IMPL_ORDER + ["harness"] if n in lat["dtypes"][dts[0]]]
        t = run["threads"]
        out += [
            f"## Latency of a 10-element call, {t} thread{'s' if t != 1 else ''}",
            "",
            f"Each call timed on its own ({lat['calls']} calls per implementation, interleaved in blocks): "
            "median [p10, p90] in ns, including the harness's own cost (two clock reads and a Python call, the "
            "`harness` row). `x.copy()` is the cost of one bare NumPy call.",
            "",
            "| implementation | " + " | ".join(dts) + " |",
            "|---|" + "---|" * len(dts),
        ]
        for n in names:
            cells = []
            for dt in dts:
                s = lat["dtypes"][dt].get(n)
                cells.append(
                    "—"
                    if s is None
                    else f"{s['median_ns']:.0f} [{s['p10_ns']:.0f}, {s['p90_ns']:.0f}]"
                )
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    return out


# ------------------------------------------------------------------------------------------------
# plot

STYLE = {
    "csoftmax-exact": dict(color="#d62728", marker="o", s=90, zorder=5, label="csoftmax exact"),
    "csoftmax-fast": dict(
        color="#d62728",
        marker="D",
        s=70,
        zorder=5,
        facecolors="none",
        linewidths=1.8,
        label="csoftmax fast",
    ),
    "numpy": dict(color="#7f7f7f", marker="s", s=30, label="NumPy (classic)"),
    "scipy": dict(color="#8c564b", marker="v", s=30, label="SciPy"),
    "torch": dict(color="#ff7f0e", marker="^", s=35, label="PyTorch"),
    "onnxruntime": dict(color="#1f77b4", marker="P", s=45, label="ONNX Runtime"),
    "numba": dict(color="#2ca02c", marker="X", s=40, label="numba"),
    "jax": dict(color="#9467bd", marker="*", s=60, label="JAX"),
}


def plot(data: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    labels = [c["label"] for c in runs[0]["cases"]]
    n = len(labels)
    width, height = 2.2 + 6.4 * len(runs), 0.34 * n + 2.5
    fig, axes = plt.subplots(
        1, len(runs), figsize=(width, height), sharex=True, sharey=True, squeeze=False
    )
    for ax, run in zip(axes[0], runs):
        ys = {c["id"]: n - 1 - i for i, c in enumerate(runs[0]["cases"])}
        for case in run["cases"]:
            y = ys.get(case["id"])
            if y is None:
                continue
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", zorder=0)
            name, t = copy_floor(case)
            if t:
                ax.scatter(
                    [case["elements"] / t],
                    [y],
                    marker="|",
                    s=260,
                    color="black",
                    linewidths=1.5,
                    zorder=3,
                )
        for name, style in STYLE.items():
            xs, yv = [], []
            for case in run["cases"]:
                r = case["results"].get(name)
                if r and case["id"] in ys:
                    xs.append(r["elements_per_s"])
                    yv.append(ys[case["id"]])
            if xs:
                ax.scatter(xs, yv, **style)
        ax.set_xscale("log")
        t = run["threads"]
        ax.set_title(f"{t} thread{'s' if t != 1 else ''}", fontsize=12)
        ax.set_xlabel("throughput, elements per second (log scale; right is faster)")
        ax.grid(axis="x", which="major", color="#cccccc", linewidth=0.8)
        ax.grid(axis="x", which="minor", color="#eeeeee", linewidth=0.5)
        ax.set_ylim(-0.6, n - 0.4)
    axes[0][0].set_yticks(range(n))
    axes[0][0].set_yticklabels(list(reversed(labels)), fontsize=9)
    handles, names = axes[0][0].get_legend_handles_labels()
    copy_handle = plt.Line2D(
        [], [], marker="|", linestyle="none", color="black", markersize=14, markeredgewidth=1.5
    )
    handles.append(copy_handle)
    names.append("memory copy of the same size (bandwidth floor)")
    m = data["machine"]
    cs = (runs[0].get("csoftmax") or {}).get("config") or {}
    backend = csoftmax_backend(data)
    commit = (data.get("git") or {}).get("commit")
    title = (
        f"softmax throughput: csoftmax {cs.get('version', '')} (backend {backend}, "
        f"ISA {cs.get('isa')}) vs peers"
    )
    subtitle = (
        f"{m.get('cpu_model')}, {m.get('usable_cpus')} CPUs; commit "
        f"{commit[:10] if commit else 'none'}; {data['created'][:10]}; median of "
        f"{data['settings']['rounds']} interleaved rounds"
    )
    if backend != "c":
        subtitle = "csoftmax backend is NOT the native kernel: its points time the NumPy fallback"
    fig.text(
        0.5,
        1 - 0.28 / height,
        title,
        ha="center",
        va="center",
        fontsize=12.5,
        color="black" if backend == "c" else "#d62728",
    )
    fig.text(
        0.5,
        1 - 0.55 / height,
        subtitle,
        ha="center",
        va="center",
        fontsize=9.5,
        color="#444444" if backend == "c" else "#d62728",
    )
    fig.legend(
        handles,
        names,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.05 / height),
        ncol=min(5, len(handles)),
        fontsize=9,
        frameon=False,
    )
    fig.subplots_adjust(
        left=2.0 / width,
        right=1 - 0.2 / width,
        top=1 - 1.0 / height,
        bottom=1.2 / height,
        wspace=0.04,
    )
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(data: dict, out_dir: Path, make_plot: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "md": out_dir / "bench.md"}
    paths["json"].write_text(json.dumps(data, indent=1))
    paths["md"].write_text(markdown(data))
    if make_plot:
        try:
            paths["png"] = plot(data, out_dir / "bench.png")
        except ImportError as exc:
            print(f"note: no plot ({exc}); pip install matplotlib")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Rewrite bench.md and bench.png from a bench.json.",
    )
    parser.add_argument(
        "json", nargs="?", default=str(Path(__file__).parent / "results" / "bench.json")
    )
    parser.add_argument("--out", default=None, help="folder (default: the JSON's folder)")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    out_dir = Path(args.out) if args.out else Path(args.json).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.md").write_text(markdown(data))
    plot(data, out_dir / "bench.png")
    print(f"wrote {out_dir / 'bench.md'} and {out_dir / 'bench.png'}")
    return 0


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


if __name__ == "__main__":
    raise SystemExit(main())
