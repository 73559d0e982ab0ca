"""python -m csoftmax: configuration, a self-check against the pure-NumPy
backend, and a quick speed table against NumPy and SciPy."""

import sys
import timeit

import numpy as np

import csoftmax
from csoftmax import _fallback


def _classic_numpy_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _close(got, want, dtype, scale=1.0):
    """Within 8 ULP of `want` (of `scale` where that is larger: the backward passes' sums)."""
    tolerance = 8 * np.finfo(dtype).eps * np.maximum(scale, np.abs(want))
    with np.errstate(invalid="ignore"):  # -inf - -inf where both are -inf
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        close = (np.abs(got - want) <= tolerance) | (got == want) | (np.isnan(got) & np.isnan(want))
    return np.shape(got) == np.shape(want) and bool(np.all(close))


def self_check():
    """Every function, dtype and a few layouts against the NumPy backend; returns failures."""
    rng = np.random.default_rng(2024)
    failures = []
    cases = [
        ((7,), None),
        ((33, 70), -1),
        ((33, 70), 0),
        ((5, 6, 7), (0, 2)),
        ((3, 40000), -1),  # long rows take the blocked path
    ]
    for shape, axis in cases:
        for dtype in (np.float32, np.float64):
            x = (rng.standard_normal(shape) * 30).astype(dtype)
            x.flat[0] = -np.inf
            where = rng.random(shape) < 0.8
            calls = [(name, (x,), {}) for name in ("softmax", "log_softmax", "logsumexp")]
            calls += [(name, (x,), {"where": where}) for name in ("softmax", "log_softmax")]
            calls += [(name, (x,), {"temperature": 0.7}) for name in ("softmax", "log_softmax")]
            grad = rng.standard_normal(shape).astype(dtype)
            y = _fallback.softmax(x, axis=axis)
            calls += [("softmax_backward", (grad, y), {"where": where})]
            calls += [("log_softmax_backward", (grad, _fallback.log_softmax(x, axis=axis)), {})]
            for name, args, options in calls:
                got = getattr(csoftmax, name)(*args, axis=axis, **options)
                want = getattr(_fallback, name)(*args, axis=axis, **options)
                # the backward outputs cancel against sum(grad * y) or sum(grad)
                scale = np.abs(grad).sum() if name.endswith("backward") else 1.0
                if not _close(got, want, dtype, scale):
                    failures.append(
                        f"{name} {np.dtype(dtype).name} shape={shape} axis={axis} {sorted(options)}"
                    )
        logits = rng.standard_normal((64, 10)).astype(dtype)
        target = rng.integers(0, 10, 64)
        indptr = np.array([0, 5, 5, 40, 64])
        for name, args, options in [
            ("cross_entropy", (logits, target), {"label_smoothing": 0.1}),
            ("segment_softmax", (logits, indptr), {}),
            ("segment_logsumexp", (logits, indptr), {}),
        ]:
            if not _close(
                getattr(csoftmax, name)(*args, **options),
                getattr(_fallback, name)(*args, **options),
                dtype,
            ):
                failures.append(f"{name} {np.dtype(dtype).name}")
    return failures


def _median_time(function, rounds=7):
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    number = max(1, number // 5)
    return sorted(t / number for t in timer.repeat(rounds, number))[rounds // 2]


def speed_table():
    """Median call time of csoftmax, SciPy and NumPy's classic formula at a few sizes."""
    try:
        import scipy.special as special
    except ImportError:
        special = None
    rng = np.random.default_rng(0)
    cases = [((10,), np.float64, -1), ((1000, 1000), np.float32, -1), ((1000, 1000), np.float64, 0)]
    print(f"{'case':<28}{'csoftmax':>12}{'scipy':>12}{'numpy':>12}{'vs scipy':>10}")
    for shape, dtype, axis in cases:
        x = rng.standard_normal(shape).astype(dtype)
        ours = _median_time(lambda x=x, axis=axis: csoftmax.softmax(x, axis=axis))
        numpy_time = _median_time(lambda x=x, axis=axis: _classic_numpy_softmax(x, axis))
        scipy_time = (
            _median_time(lambda x=x, axis=axis: special.softmax(x, axis=axis))
            if special
            else float("nan")
        )
        label = f"{shape} {np.dtype(dtype).name} axis={axis}"
        print(
            f"{label:<28}{_format(ours):>12}{_format(scipy_time):>12}{_format(numpy_time):>12}"
            + (f"{scipy_time / ours:>9.1f}x" if special else f"{'n/a':>10}")
        )


def _format(seconds):
    if seconds != seconds:
        return "n/a"
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def main():
    print("csoftmax configuration")
    csoftmax.show_config()
    print()
    failures = self_check()
    print("self-check against the NumPy backend:", "FAILED" if failures else "ok")
    for failure in failures:
        print("  mismatch:", failure)
    print()
    print(f"speed (median per call, {csoftmax.get_num_threads()} threads)")
    speed_table()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
