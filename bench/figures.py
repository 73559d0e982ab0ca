"""The eight numbered figures of issue 3, evaluated from one benchmark run's JSON.

    python -m bench.figures [bench/results/bench.json]

Prints PASS / FAIL / N/A with the numbers behind each verdict. A verdict whose margin is smaller
than the measurement's own spread (half the interquartile range of the numbers compared) is marked
"close": rerun before trusting it. Nothing here asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .peers import PEER_NAMES
from .report import (
    build_mismatch,
    csoftmax_backend,
    fastest_peer,
    fmt_time,
    median,
    rel_spread,
    run_case,
)

NON_ORT_PEERS = [p for p in PEER_NAMES if p != "onnxruntime"]
LONG_ROW = "softmax-f32-1x10000000-axis-1"
F64_ROWS = "softmax-f64-1000x1000-axis-1"
F64_COLUMNS = "softmax-f64-1000x1000-axis0"
SHORT_ROWS = "softmax-f32-100000x10-axis-1"
LARGE_OUT = "softmax-f32-4096x4096-axis-1-out"
PRETTY = {
    "numpy": "NumPy",
    "scipy": "SciPy",
    "torch": "PyTorch",
    "onnxruntime": "ONNX Runtime",
    "numba": "numba",
    "jax": "JAX",
}


def _threads_label(t: int) -> str:
    return f"{t} thread" + ("s" if t != 1 else "")


def _geomean(values):
    values = [v for v in values if v and math.isfinite(v) and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _noise(case, *names) -> float:
    """Combined relative spread of the medians compared (sum of half-IQR / median)."""
    return sum(rel_spread(case, n) or 0.0 for n in names)


def _close(value: float, threshold: float, noise: float) -> str:
    if threshold and abs(value / threshold - 1) < noise:
        return (
            f" (close: margin {abs(value / threshold - 1) * 100:.0f}% < noise {noise * 100:.0f}%)"
        )
    return ""


class Verdict:
    def __init__(self, number: int, title: str):
        self.number, self.title = number, title
        self.ok: bool | None = True
        self.lines: list[str] = []

    def fail(self):
        self.ok = False

    def na(self, why: str):
        if self.ok is not False:
            self.ok = None
        self.lines.append(f"N/A: {why}")

    def text(self) -> str:
        status = {True: "PASS", False: "FAIL", None: "N/A "}[self.ok]
        return "\n".join(
            [f"Figure {self.number}  {status}  {self.title}"] + [f"    {ln}" for ln in self.lines]
        )


def figure1(data) -> Verdict:
    v = Verdict(
        1,
        "exact mode faster than NumPy, SciPy, PyTorch, numba, JAX on every case; ≤ 1.25× ONNX Runtime; geomean(fastest peer / csoftmax) ≥ 1.3",
    )
    for run in data["runs"]:
        losses, ort_worst, ratios = [], None, []
        for case in run["cases"]:
            cs = median(case, "csoftmax-exact")
            if cs is None:
                continue
            for p in NON_ORT_PEERS:
                t = median(case, p)
                if t is not None and cs >= t:
                    losses.append(
                        f"{case['label']}: {PRETTY[p]} {fmt_time(t)} vs {fmt_time(cs)} ({t / cs:.2f}×){_close(t / cs, 1.0, _noise(case, p, 'csoftmax-exact'))}"
                    )
            t = median(case, "onnxruntime")
            if t is not None and (ort_worst is None or cs / t > ort_worst[0]):
                ort_worst = (cs / t, case["label"], _noise(case, "onnxruntime", "csoftmax-exact"))
            _, pt = fastest_peer(case)
            if pt:
                ratios.append(pt / cs)
        g = _geomean(ratios)
        if g is None:
            v.na(f"{_threads_label(run['threads'])}: no csoftmax exact timings")
            continue
        ok = not losses and (ort_worst is None or ort_worst[0] <= 1.25) and g >= 1.3
        if not ok:
            v.fail()
        ort_txt = (
            "no ONNX Runtime"
            if ort_worst is None
            else (
                f"worst vs ONNX Runtime {ort_worst[0]:.2f}× its time ({ort_worst[1]}){_close(ort_worst[0], 1.25, ort_worst[2])}"
            )
        )
        v.lines.append(
            f"{_threads_label(run['threads'])}: {'ok' if ok else 'FAIL'} — lost {len(losses)} case×peer comparisons to "
            f"non-ORT peers; {ort_txt}; geomean {g:.2f} over {len(ratios)} cases"
        )
        v.lines += [f"  lost: {x}" for x in losses[:12]] + (
            [f"  ... {len(losses) - 12} more"] if len(losses) > 12 else []
        )
    return v


def figure2(data) -> Verdict:
    v = Verdict(2, "fast mode loses no case to any peer (ONNX Runtime included); geomean ≥ 1.6")
    for run in data["runs"]:
        losses, ratios = [], []
        for case in run["cases"]:
            cs = median(case, "csoftmax-fast")
            pn, pt = fastest_peer(case)
            if cs is None or pt is None:
                continue
            ratios.append(pt / cs)
            if cs >= pt:
                losses.append(
                    f"{case['label']}: {PRETTY[pn]} {fmt_time(pt)} vs {fmt_time(cs)} ({pt / cs:.2f}×){_close(pt / cs, 1.0, _noise(case, pn, 'csoftmax-fast'))}"
                )
        g = _geomean(ratios)
        if g is None:
            v.na(f"{_threads_label(run['threads'])}: no csoftmax fast timings")
            continue
        ok = not losses and g >= 1.6
        if not ok:
            v.fail()
        v.lines.append(
            f"{_threads_label(run['threads'])}: {'ok' if ok else 'FAIL'} — lost {len(losses)} cases; geomean {g:.2f} over {len(ratios)} cases"
        )
        v.lines += [f"  lost: {x}" for x in losses]
    return v


def figure3(data) -> Verdict:
    v = Verdict(
        3,
        "10-element call: csoftmax median ≤ 1.5 µs, ≥ 2.5× faster than the fastest peer, ≥ 9× SciPy (f64 and f32)",
    )
    any_lat = False
    for run in data["runs"]:
        lat = run.get("latency")
        if not lat:
            continue
        any_lat = True
        for dt, table in lat["dtypes"].items():
            cs = table.get("csoftmax-exact")
            if cs is None:
                v.na(f"{_threads_label(run['threads'])} {dt}: no csoftmax latency")
                continue
            c = cs["median_ns"]
            peers = {p: table[p]["median_ns"] for p in PEER_NAMES if p in table}
            pn = min(peers, key=peers.get) if peers else None
            ratio_peer = peers[pn] / c if pn else None
            ratio_scipy = peers["scipy"] / c if "scipy" in peers else None
            ok = (
                c <= 1500
                and (ratio_peer is None or ratio_peer >= 2.5)
                and (ratio_scipy is None or ratio_scipy >= 9)
            )
            if not ok:
                v.fail()
            fast = table.get("csoftmax-fast", {}).get("median_ns")
            line = f"{_threads_label(run['threads'])} {dt}: {'ok' if ok else 'FAIL'} — csoftmax exact {c:.0f} ns"
            if fast is not None:
                line += f" (fast {fast:.0f} ns)"
            line += (
                f"; fastest peer {PRETTY.get(pn, pn)} {peers[pn]:.0f} ns ({ratio_peer:.2f}×)"
                if pn
                else "; no peer"
            )
            if ratio_scipy:
                line += f"; SciPy {peers['scipy']:.0f} ns ({ratio_scipy:.1f}×)"
            line += f"; harness {table['harness']['median_ns']:.0f} ns included in every number"
            v.lines.append(line)
    if not any_lat:
        v.na("no latency measurement in this run (run without --no-latency)")
    return v


def _paired(run: dict, name: str) -> dict | None:
    """A ratio bench/pairs.py timed alternately in this run, if it did."""
    return (run.get("pairs") or {}).get(name)


def _paired_text(ratio: dict, what: str, threshold: float) -> str:
    """'alternating <what>: <medians>, <ratio>' with the close mark from the per-round spread."""
    noise = (ratio["q3"] - ratio["q1"]) / 2 / ratio["median"]
    return (
        f"alternating {what}: {fmt_time(ratio['numerator_median_s'])} / "
        f"{fmt_time(ratio['denominator_median_s'])}, "
        f"{ratio['median']:.2f}×{_close(ratio['median'], threshold, noise)}"
    )


def figure4(data) -> Verdict:
    v = Verdict(
        4,
        "(1, 10_000_000) float32: most threads ≥ 1.7× faster than 1 thread, bitwise-identical results",
    )
    runs = {r["threads"]: r for r in data["runs"]}
    if 1 not in runs or len(runs) < 2:
        v.na("needs a 1-thread run and a multi-thread run")
        return v
    tmax = max(runs)
    a, b = run_case(runs[1], LONG_ROW), run_case(runs[tmax], LONG_ROW)
    if not a or not b or median(a, "csoftmax-exact") is None or median(b, "csoftmax-exact") is None:
        v.na(f"case {LONG_ROW} missing")
        return v
    paired = _paired(runs[tmax], "threads")
    for mode in ("exact", "fast"):
        name = f"csoftmax-{mode}"
        t1, tn = median(a, name), median(b, name)
        if t1 is None or tn is None:
            continue
        same = (
            a["csoftmax_digest"].get(name) == b["csoftmax_digest"].get(name)
            and a["csoftmax_digest"].get(name) is not None
        )
        separate = f"{fmt_time(t1)} at 1 thread, {fmt_time(tn)} at {tmax}: {t1 / tn:.2f}×"
        if paired and mode in paired:
            ratio = paired[mode]["median"]
            measured = (
                f"{_paired_text(paired[mode], f'1 and {tmax} threads', 1.7)}; "
                f"as separately timed cases {separate}"
            )
        else:
            ratio = t1 / tn
            measured = separate + _close(ratio, 1.7, _noise(a, name) + _noise(b, name))
        ok = ratio >= 1.7 and same
        if mode == "exact" and not ok:
            v.fail()
        v.lines.append(
            f"{mode}: {'ok' if ok else 'FAIL'} — {measured}; results "
            + ("bitwise identical" if same else "DIFFER")
            + ("" if mode == "exact" else " (informational)")
        )
    # every case: same bits at every thread count?
    total, identical = 0, 0
    for case in runs[1]["cases"]:
        other = run_case(runs[tmax], case["id"])
        for name, d in case["csoftmax_digest"].items():
            if other and name in other["csoftmax_digest"]:
                total += 1
                identical += other["csoftmax_digest"][name] == d
    v.lines.append(
        f"all cases: {identical}/{total} csoftmax results bitwise identical between 1 and {tmax} threads"
    )
    return v


def figure5(data) -> Verdict:
    v = Verdict(5, "axis=0 of (1000, 1000) float64 takes ≤ 1.2× the time of axis=-1")
    for run in data["runs"]:
        rows, cols = run_case(run, F64_ROWS), run_case(run, F64_COLUMNS)
        paired = _paired(run, "axes")
        if not paired and (
            not rows
            or not cols
            or median(rows, "csoftmax-exact") is None
            or median(cols, "csoftmax-exact") is None
        ):
            v.na(f"{_threads_label(run['threads'])}: case missing")
            continue
        for mode in ("exact", "fast"):
            name = f"csoftmax-{mode}"
            r = median(rows, name) if rows else None
            c = median(cols, name) if cols else None
            separate = (
                f"axis 0 {fmt_time(c)}, axis -1 {fmt_time(r)}: {c / r:.2f}×"
                if r is not None and c is not None
                else None
            )
            if paired and mode in paired:
                ratio = paired[mode]["median"]
                measured = _paired_text(paired[mode], "axis 0 and axis -1", 1.2) + (
                    f"; as separately timed cases {separate}" if separate else ""
                )
            elif separate:
                ratio = c / r
                measured = separate + _close(ratio, 1.2, _noise(rows, name) + _noise(cols, name))
            else:
                continue
            ok = ratio <= 1.2
            if mode == "exact" and not ok:
                v.fail()
            v.lines.append(
                f"{_threads_label(run['threads'])} {mode}: {'ok' if ok else 'FAIL'} — {measured}"
            )
    return v


def figure6(data) -> Verdict:
    v = Verdict(6, "(100000, 10) float32, exact mode ≥ 2× faster than the fastest peer")
    for run in data["runs"]:
        case = run_case(run, SHORT_ROWS)
        cs = median(case, "csoftmax-exact") if case else None
        pn, pt = fastest_peer(case) if case else (None, None)
        if cs is None or pt is None:
            v.na(f"{_threads_label(run['threads'])}: case or timings missing")
            continue
        ok = pt / cs >= 2
        if not ok:
            v.fail()
        v.lines.append(
            f"{_threads_label(run['threads'])}: {'ok' if ok else 'FAIL'} — csoftmax {fmt_time(cs)}, {PRETTY[pn]} {fmt_time(pt)}: "
            f"{pt / cs:.2f}×{_close(pt / cs, 2.0, _noise(case, pn, 'csoftmax-exact'))}"
        )
    return v


def figure7(data) -> Verdict:
    v = Verdict(7, "float64 (1000, 1000): exact ≥ 1.2×, fast ≥ 1.5× faster than PyTorch and JAX")
    for run in data["runs"]:
        case = run_case(run, F64_ROWS)
        if not case:
            v.na(f"{_threads_label(run['threads'])}: case missing")
            continue
        parts = []
        for mode, need in (("exact", 1.2), ("fast", 1.5)):
            cs = median(case, f"csoftmax-{mode}")
            if cs is None:
                v.na(f"{_threads_label(run['threads'])}: no csoftmax {mode}")
                continue
            for p in ("torch", "jax"):
                t = median(case, p)
                if t is None:
                    parts.append(f"{mode} vs {PRETTY[p]}: not run")
                    continue
                ok = t / cs >= need
                if not ok:
                    v.fail()
                parts.append(
                    f"{mode} vs {PRETTY[p]} {t / cs:.2f}× (need {need}){'' if ok else ' FAIL'}"
                    f"{_close(t / cs, need, _noise(case, p, f'csoftmax-{mode}'))}"
                )
        v.lines.append(f"{_threads_label(run['threads'])}: " + "; ".join(parts))
    return v


def figure8(data) -> Verdict:
    v = Verdict(
        8,
        "(4096, 4096) float32 with out= at the most threads: ≤ 1.3× the time of a copy with as many threads",
    )
    run = max(data["runs"], key=lambda r: r["threads"])
    case = run_case(run, LARGE_OUT)
    if not case:
        v.na(f"case {LARGE_OUT} missing")
        return v
    copy_name = "memcopy-threaded" if median(case, "memcopy-threaded") is not None else "memcopy"
    ct = median(case, copy_name)
    if ct is None:
        v.na("no copy timing")
        return v
    for mode in ("exact", "fast"):
        cs = median(case, f"csoftmax-{mode}")
        if cs is None:
            continue
        ok = cs / ct <= 1.3
        if mode == "exact" and not ok:
            v.fail()
        v.lines.append(
            f"{_threads_label(run['threads'])} {mode}: {'ok' if ok else 'FAIL'} — csoftmax {fmt_time(cs)} "
            f"({case['results'][f'csoftmax-{mode}']['gb_per_s']:.1f} GB/s), {copy_name} {fmt_time(ct)} "
            f"({case['results'][copy_name]['gb_per_s']:.1f} GB/s): {cs / ct:.2f}×"
            f"{_close(cs / ct, 1.3, _noise(case, copy_name, f'csoftmax-{mode}'))}"
            + ("" if mode == "exact" else " (informational)")
        )
    if median(case, "csoftmax-exact") is None:
        v.na("no csoftmax exact timing")
    return v


def accuracy_lines(data) -> list[str]:
    run = next((r for r in data["runs"] if r.get("accuracy")), None)
    if run is None:
        return ["Accuracy  N/A  (run without --no-accuracy)"]
    acc = run["accuracy"]["results"]
    keys = ["softmax-float32", "softmax-float64", "log_softmax-float32", "log_softmax-float64"]
    lines = [
        f"Accuracy (max ULP, rows spread over ±{run['accuracy']['spread']:g}; contract: exact ≤ 4)"
    ]
    for name in ["csoftmax-exact", "csoftmax-fast"] + PEER_NAMES:
        if name not in acc:
            continue
        vals = [acc[name].get(k, {}).get("max_ulp") for k in keys]
        txt = ", ".join(
            f"{k.replace('-float', ' f')} {v:.2f}" if v is not None else f"{k} —"
            for k, v in zip(keys, vals)
        )
        flag = ""
        if name == "csoftmax-exact":
            flag = "  PASS" if all(v is not None and v <= 4 for v in vals) else "  FAIL"
        lines.append(f"    {name:15s} {txt}{flag}")
    return lines


def evaluate(data) -> list[Verdict]:
    return [
        f(data) for f in (figure1, figure2, figure3, figure4, figure5, figure6, figure7, figure8)
    ]


def summary(data) -> str:
    backend = csoftmax_backend(data)
    run0 = data["runs"][0]
    cfg = (run0.get("csoftmax") or {}).get("config") or {}
    commit = (data.get("git") or {}).get("commit")
    head = [
        f"Figures of issue 3 — csoftmax {cfg.get('version', '?')} backend {backend}, ISA {cfg.get('isa')}, "
        f"commit {commit[:12] if commit else 'none'}{' (dirty)' if (data.get('git') or {}).get('dirty') else ''}, "
        f"threads {[r['threads'] for r in data['runs']]}, {data['machine'].get('cpu_model')}, {data['created']}"
    ]
    from .cases import CASES

    ran = {c["id"] for r in data["runs"] for c in r["cases"]}
    if len(ran) < len(CASES):
        head.append(
            f"WARNING: partial run ({len(ran)} of {len(CASES)} cases): figures 1 and 2 cover only "
            "the cases that ran"
        )
    mismatch = build_mismatch(data)
    if mismatch:
        head.append(f"WARNING: {mismatch}")
    if backend != "c":
        head.insert(
            0,
            "!" * 90
            + f"\n!! csoftmax backend: {backend} — these figures are NOT those of the native kernel\n"
            + "!" * 90,
        )
    verdicts = evaluate(data)
    body = [v.text() for v in verdicts]
    passed = sum(v.ok is True for v in verdicts)
    failed = sum(v.ok is False for v in verdicts)
    return "\n".join(
        head
        + body
        + accuracy_lines(data)
        + [f"{passed} PASS, {failed} FAIL, {8 - passed - failed} N/A"]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.figures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "json", nargs="?", default=str(Path(__file__).parent / "results" / "bench.json")
    )
    args = parser.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    print(summary(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
