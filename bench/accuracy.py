"""Accuracy of every implementation in ULPs of the result's dtype, on one representative row set
per dtype, against a long double reference.

The rows are N(0, 1) samples, each row scaled so that its largest magnitude is exactly
``spread`` (100 by default: logits spread over +-100, where the classical algorithm's rounding of
``x - max`` shows). Results whose exact value is below the normal range of the dtype are left
out (the contract allows flushing them to 0).
"""

from __future__ import annotations

import numpy as np

from .cases import Case

ROWS, COLUMNS, SPREAD = 64, 1000, 100.0


def rows(dtype: str, spread: float = SPREAD, shape=(ROWS, COLUMNS), seed: int = 1234) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape)
    z *= spread / np.abs(z).max(axis=-1, keepdims=True)
    return z.astype(dtype)


def reference(op: str, x: np.ndarray) -> np.ndarray:
    """softmax / log_softmax along the last axis in long double (x86: 64-bit significand)."""
    xl = x.astype(np.longdouble)
    s = xl - xl.max(axis=-1, keepdims=True)
    e = np.exp(s)
    if op == "softmax":
        return e / e.sum(axis=-1, keepdims=True)
    # log(sum) = log1p(sum of the terms other than one maximal one): outputs near 0 stay exact.
    first_max = np.argmax(x, axis=-1)[..., None]
    np.put_along_axis(e, first_max, 0, axis=-1)
    return s - np.log1p(e.sum(axis=-1, keepdims=True))


def ulp_errors(y: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    """|y - ref| in units of the last place of ref rounded to dtype (normal range only)."""
    dt = np.dtype(dtype)
    ref_rounded = ref.astype(dt)
    keep = np.abs(ref) >= np.finfo(dt).tiny
    ulp = np.spacing(np.abs(ref_rounded[keep])).astype(np.longdouble)
    err = np.abs(y[keep].astype(np.longdouble) - ref[keep]) / ulp
    return err.astype(np.float64)


def longdouble_is_wide() -> bool:
    return np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def measure(impls, log=print) -> dict:
    """{impl name: {"softmax-float32": {"max_ulp", "mean_ulp"}, ...}} for the implementations that run."""
    results = {}
    sets = [(op, dt) for op in ("softmax", "log_softmax") for dt in ("float32", "float64")]
    data = {dt: rows(dt) for dt in ("float32", "float64")}
    refs = {(op, dt): reference(op, data[dt]) for op, dt in sets}
    for impl in impls:
        if impl.kind == "reference":
            continue
        entry = {}
        for op, dt in sets:
            key = f"{op}-{dt}"
            case = Case(op, data[dt].shape, dt, -1)
            try:
                y = np.asarray(impl.prepare(case, data[dt])())
            except Exception as exc:
                entry[key] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            if y.dtype != np.dtype(dt) or y.shape != data[dt].shape:
                entry[key] = {"error": f"returned {y.dtype}{y.shape}"}
                continue
            errors = ulp_errors(y, refs[(op, dt)], dt)
            finite = np.isfinite(errors)
            entry[key] = {
                "max_ulp": float(errors.max()) if finite.all() else float("inf"),
                "p99_ulp": float(np.percentile(errors[finite], 99)),
            }
        results[impl.name] = entry
    return {
        "rows": [ROWS, COLUMNS],
        "spread": SPREAD,
        "reference": "numpy long double"
        + ("" if longdouble_is_wide() else " (== float64 here: float64 ULPs are not meaningful)"),
        "results": results,
    }
