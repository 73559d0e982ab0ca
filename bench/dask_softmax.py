"""csoftmax.dask against the hand-written dask.array softmax, on an array larger than memory.

    python -m bench.dask_softmax                          # (200_000, 32_000) float32, ~25.6 GB
    python -m bench.dask_softmax --shape 20000,8000       # a quick run

A float32 array is generated lazily, chunk by chunk, as the sum of a hashed
row term and a hashed column term (one write per element, so that generating
it does not dominate; values in [-8, 8)), on a
``distributed.LocalCluster`` of ``--workers`` single-threaded worker processes
with ``--memory-limit`` each. Softmax runs along the chunked axis 0 and the
unchunked axis 1 (the default chunks span all columns) -- or along both
chunked axes when ``--chunks`` cuts the columns too -- with

* ``csoftmax``: ``csoftmax.dask.softmax(x, axis)``;
* ``formula``:  ``e = da.exp(x - x.max(axis, keepdims=True)); e / e.sum(axis, keepdims=True)``;
* ``generate``: ``x.sum()`` alone, the cost of producing the data.

Each result is reduced to a scalar (``.sum(dtype=float64)``, which must equal
the number of slices), so nothing is materialised whole. Reported per run:
wall time, input elements/s, the peak resident memory of the busiest worker
(``ru_maxrss``; each run gets a fresh cluster) and the limit.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np


def _hashed(start, stop, multiplier):
    """Uniform-looking float32 values in [-4, 4) from the indices start..stop-1."""
    hashed = np.arange(start, stop, dtype=np.uint32) * np.uint32(multiplier)
    hashed ^= hashed >> np.uint32(15)
    hashed *= np.uint32(2246822519)
    hashed >>= np.uint32(16)
    return hashed.astype(np.float32) * np.float32(8 / 65536) - np.float32(4)


def generate_block(block_info=None):
    """The block of x at block_info's location: x[i, j] = row_term(i) + column_term(j),
    one write per element, so that generating x costs about what reading it would."""
    (row_start, row_stop), (column_start, column_stop) = block_info[None]["array-location"]
    rows = _hashed(row_start, row_stop, 2654435761)
    columns = _hashed(column_start, column_stop, 40503)
    return np.add(rows[:, None], columns[None, :])


def lazy_input(shape, chunks):
    import dask.array as da

    return da.map_blocks(
        generate_block,
        dtype=np.float32,
        chunks=da.core.normalize_chunks(chunks, shape, dtype=np.float32),
        meta=np.empty((0, 0), np.float32),
    )


def formula_softmax(x, axis):
    import dask.array as da

    e = da.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run(cluster_options, shape, chunks, method, axis, timeout):
    """(seconds, the scalar or the error, peak RSS of the busiest worker, ISAs) on a fresh
    cluster; a run that fails or passes `timeout` seconds reports why instead of a value."""
    import distributed

    import csoftmax.dask

    x = lazy_input(shape, chunks)
    if method == "generate":
        total = x.sum(dtype=np.float64)
    elif method == "csoftmax":
        total = csoftmax.dask.softmax(x, axis=axis).sum(dtype=np.float64)
    else:
        total = formula_softmax(x, axis).sum(dtype=np.float64)
    with (
        distributed.LocalCluster(**cluster_options) as cluster,
        distributed.Client(cluster) as client,
    ):
        isa = client.run(lambda: __import__("csoftmax").show_config(mode="dicts")["isa"])
        start = time.perf_counter()
        try:
            value = float(client.compute(total).result(timeout=timeout))
        except Exception as error:  # e.g. TimeoutError, KilledWorker (out of memory)
            value = f"{type(error).__name__}"
        seconds = time.perf_counter() - start
        peaks = client.run(peak_rss_bytes)
    return seconds, value, max(peaks.values()), sorted(set(isa.values()))


def parse_pair(text):
    first, second = (int(part.replace("_", "")) for part in text.split(","))
    return first, second


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_pair, default=(200_000, 32_000), help="rows,columns")
    parser.add_argument(
        "--chunks",
        type=parse_pair,
        default=None,
        help="rows,columns per chunk (default: 64 MB chunks spanning all columns)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="8GiB", help="per worker")
    parser.add_argument("--methods", default="generate,csoftmax,formula")
    parser.add_argument("--axes", default="0,1")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per run")
    args = parser.parse_args(argv)

    import csoftmax

    shape = args.shape
    chunks = args.chunks or (max(1, (16 << 20) // shape[1]), shape[1])
    axes = [int(axis) for axis in args.axes.split(",")]
    elements = math.prod(shape)
    cluster_options = dict(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=args.memory_limit,
        dashboard_address=None,
    )
    print(
        f"shape {shape} float32 ({elements * 4 / 1e9:.1f} GB), chunks {chunks} "
        f"({math.prod(chunks) * 4 / 1e6:.0f} MB), {args.workers} workers x 1 thread, memory "
        f"limit {args.memory_limit} per worker; csoftmax {csoftmax.__version__}, "
        f"backend {csoftmax.backend}"
    )
    print(
        f"{'method':<10} {'axis':>4} {'chunks along axis':>17} {'time s':>8} "
        f"{'Gelem/s':>8} {'peak RSS/worker':>16} {'check':>6}  ISA"
    )
    for axis in axes:
        for method in args.methods.split(","):
            if method == "generate" and axis != axes[0]:
                continue
            seconds, value, peak, isa = run(
                cluster_options, shape, chunks, method, axis, args.timeout
            )
            expected = elements / shape[axis]
            if isinstance(value, str):
                check = value
            else:
                correct = method == "generate" or abs(value - expected) <= 1e-3 * expected
                check = "ok" if correct else "WRONG"
            print(
                f"{method:<10} {axis if method != 'generate' else '-':>4} "
                f"{math.ceil(shape[axis] / chunks[axis]):>17} {seconds:>8.1f} "
                f"{elements / seconds / 1e9:>8.2f} {peak / 2**30:>12.2f} GiB "
                f"{check:>6}  {','.join(isa)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
