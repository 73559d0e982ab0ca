"""The benchmark cases of issue 3: (operation, shape, dtype, axis, out=).

A case id is a stable, filterable string such as ``softmax-f32-1000x1000-axis-1``
or ``softmax-f32-4096x4096-axis-1-out``; ``--cases`` matches against it.
"""

from __future__ import annotations

import fnmatch
import zlib
from dataclasses import dataclass

import numpy as np

_DTYPE_SHORT = {"float32": "f32", "float64": "f64"}


@dataclass(frozen=True)
class Case:
    op: str  # "softmax" or "log_softmax"
    shape: tuple
    dtype: str  # "float32" or "float64"
    axis: int | None
    out: bool = False  # True: a preallocated output is passed (out=)

    @property
    def id(self) -> str:
        shape = "x".join(str(d) for d in self.shape)
        axis = "None" if self.axis is None else str(self.axis)
        return f"{self.op}-{_DTYPE_SHORT[self.dtype]}-{shape}-axis{axis}" + (
            "-out" if self.out else ""
        )

    @property
    def label(self) -> str:
        """Short human label used in tables and plots."""
        shape = (
            "("
            + ", ".join(f"{d:_}" if d >= 100_000 else str(d) for d in self.shape)
            + ("," if len(self.shape) == 1 else "")
            + ")"
        )
        op = "" if self.op == "softmax" else "log_softmax "
        axis = (
            ""
            if (self.axis == -1 and len(self.shape) > 1)
            or (self.axis in (-1, 0) and len(self.shape) == 1)
            else f" axis={self.axis}"
        )
        return f"{op}{_DTYPE_SHORT[self.dtype]} {shape}{axis}" + (" out=" if self.out else "")

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape))

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def bytes_moved(self) -> int:
        """Bytes read plus bytes written by an ideal implementation (x read once, y written once)."""
        return 2 * self.elements * self.itemsize

    @property
    def seed(self) -> int:
        # Same input for the same (shape, dtype) whatever the op/axis/out and whatever the process,
        # so results can be compared bit for bit across thread counts.
        return zlib.crc32(f"{self.shape}{self.dtype}".encode())

    def make_input(self) -> np.ndarray:
        """Deterministic N(0, 1) * 3 logits (a typical spread; accuracy uses its own rows)."""
        rng = np.random.default_rng(self.seed)
        return (rng.standard_normal(self.shape, dtype=np.float64) * 3.0).astype(self.dtype)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "label": self.label,
            "op": self.op,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "axis": self.axis,
            "out": self.out,
            "elements": self.elements,
            "bytes_moved": self.bytes_moved,
        }


def _c(shape, dtype="float32", axis=-1, op="softmax", out=False) -> Case:
    return Case(op, tuple(shape), dtype, axis, out)


# The order is the order of the tables and of the plot.
CASES: list[Case] = [
    _c((10,), "float64"),
    _c((10,), "float32"),
    _c((1000,)),
    _c((100000, 10)),
    _c((32, 32000)),
    _c((8, 128256)),
    _c((2048, 512)),
    _c((1000, 1000), "float64", -1),
    _c((1000, 1000), "float64", 0),
    _c((1000, 1000), "float64", None),
    _c((1000, 1000)),
    _c((4096, 4096)),
    _c((1, 10_000_000)),
    # log_softmax on three of them
    _c((1000, 1000), op="log_softmax"),
    _c((32, 32000), op="log_softmax"),
    _c((1000, 1000), "float64", op="log_softmax"),
    # out= variants of the large ones (preallocated output)
    _c((1000, 1000), out=True),
    _c((4096, 4096), out=True),
    _c((1, 10_000_000), out=True),
]


def select(patterns: str | None) -> list[Case]:
    """Cases whose id matches any comma-separated pattern (substring, or fnmatch glob with * ? [])."""
    if not patterns:
        return list(CASES)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = []
    for case in CASES:
        for p in pats:
            if any(ch in p for ch in "*?[") and fnmatch.fnmatchcase(case.id, p):
                chosen.append(case)
                break
            if p in case.id:
                chosen.append(case)
                break
    return chosen
