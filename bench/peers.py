"""The implementations the benchmark times: csoftmax (two precision modes), its peers, and the
memory-copy reference.

Every peer is used as its users use it from NumPy code: NumPy in, NumPy out, conversions included
in the timed call. Each one is optional: a missing package gives a printed note, not an error.

An implementation's ``prepare(case, x)`` returns a zero-argument callable that computes the case
on ``x`` and returns a NumPy array (for an ``out=`` case: the preallocated output it wrote), or
raises ``Unsupported`` with the reason.
"""

from __future__ import annotations

import functools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Unsupported(Exception):
    """This implementation cannot run this case (the reason is the message)."""


def _positive_axis(axis, ndim):
    return axis if axis is None or axis >= 0 else axis + ndim


class Impl:
    name = "?"
    kind = "peer"  # "csoftmax", "peer" or "reference"
    module = None  # the imported package, once load() succeeded
    version = None

    def load(self):
        """Import the package; raise ImportError (or anything) when it is not usable."""

    def set_threads(self, n: int) -> None:
        """Apply this implementation's own thread knob."""

    def threads_info(self) -> dict:
        return {}

    def prepare(self, case, x):
        raise NotImplementedError

    def close(self):
        pass


# --------------------------------------------------------------------------------------------
# csoftmax


class CSoftmax(Impl):
    kind = "csoftmax"

    def __init__(self, precision: str):
        self.precision = precision
        self.name = f"csoftmax-{precision}"

    def load(self):
        import csoftmax

        self.module = csoftmax
        self.version = getattr(csoftmax, "__version__", None)
        # Fail early (-> skipped with the reason) if this build lacks the precision keyword.
        csoftmax.softmax(np.zeros(3), axis=-1, precision=self.precision)

    def set_threads(self, n):
        if hasattr(self.module, "set_num_threads"):
            self.module.set_num_threads(n)

    def threads_info(self):
        info = {}
        if hasattr(self.module, "get_num_threads"):
            info["get_num_threads"] = self.module.get_num_threads()
        return info

    def prepare(self, case, x):
        cs = self.module
        fn = cs.softmax if case.op == "softmax" else cs.log_softmax
        if case.out:
            out = np.empty_like(x)
            return functools.partial(fn, x, axis=case.axis, out=out, precision=self.precision)
        return functools.partial(fn, x, axis=case.axis, precision=self.precision)


# --------------------------------------------------------------------------------------------
# NumPy: the classic max-subtract formula


class NumpyClassic(Impl):
    name = "numpy"

    def load(self):
        self.module = np
        self.version = np.__version__

    def prepare(self, case, x):
        axis = case.axis
        if case.op == "softmax":
            if not case.out:

                def run():
                    e = np.exp(x - x.max(axis=axis, keepdims=True))
                    return e / e.sum(axis=axis, keepdims=True)

                return run
            out = np.empty_like(x)

            def run_out():
                np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
                np.exp(out, out=out)
                np.divide(out, out.sum(axis=axis, keepdims=True), out=out)
                return out

            return run_out
        if not case.out:

            def run_log():
                s = x - x.max(axis=axis, keepdims=True)
                return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))

            return run_log
        out = np.empty_like(x)

        def run_log_out():
            np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
            lse = np.log(np.exp(out).sum(axis=axis, keepdims=True))
            np.subtract(out, lse, out=out)
            return out

        return run_log_out


# --------------------------------------------------------------------------------------------
# SciPy


class Scipy(Impl):
    name = "scipy"

    def load(self):
        import scipy
        import scipy.special

        self.module = scipy.special
        self.version = scipy.__version__

    def prepare(self, case, x):
        if case.out:
            raise Unsupported("scipy.special has no out=")
        fn = self.module.softmax if case.op == "softmax" else self.module.log_softmax
        return functools.partial(fn, x, axis=case.axis)


# --------------------------------------------------------------------------------------------
# PyTorch (CPU)


class Torch(Impl):
    name = "torch"

    def load(self):
        import torch

        self.module = torch
        self.version = torch.__version__

    def set_threads(self, n):
        self.module.set_num_threads(n)

    def threads_info(self):
        t = self.module
        return {
            "get_num_threads": t.get_num_threads(),
            "get_num_interop_threads": t.get_num_interop_threads(),
        }

    def prepare(self, case, x):
        torch = self.module
        fn = torch.softmax if case.op == "softmax" else torch.log_softmax
        shape = x.shape
        if case.axis is None:  # the whole array: one flat row
            dim = 0

            def to_t(a):
                return torch.from_numpy(a).reshape(-1)

        else:
            dim = case.axis

            def to_t(a):
                return torch.from_numpy(a)

        if case.out:
            out = np.empty_like(x)

            def run_out():
                fn(to_t(x), dim, out=to_t(out))
                return out

            return run_out
        if case.axis is None:
            return lambda: fn(to_t(x), dim).numpy().reshape(shape)
        return lambda: fn(to_t(x), dim).numpy()


# --------------------------------------------------------------------------------------------
# ONNX Runtime: a Softmax / LogSoftmax opset-13 model built in memory, one prebuilt session per
# (op, dtype, rank, axis).


class OnnxRuntime(Impl):
    name = "onnxruntime"

    def __init__(self):
        self.sessions = {}
        self.threads = None

    def load(self):
        import onnx
        import onnxruntime

        self.module = onnxruntime
        self.version = onnxruntime.__version__
        self.onnx_version = onnx.__version__

    def set_threads(self, n):
        self.threads = n
        self.sessions.clear()

    def threads_info(self):
        return {
            "intra_op_num_threads": self.threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
        }

    def _session(self, op, dtype, rank, axis):
        key = (op, dtype, rank, axis)
        if key not in self.sessions:
            from onnx import TensorProto, helper

            ort = self.module
            elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[dtype]
            dims = [f"d{i}" for i in range(rank)]
            node = helper.make_node(
                "Softmax" if op == "softmax" else "LogSoftmax", ["X"], ["Y"], axis=axis
            )
            graph = helper.make_graph(
                [node],
                "softmax",
                [helper.make_tensor_value_info("X", elem, dims)],
                [helper.make_tensor_value_info("Y", elem, dims)],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
            # IR 8 is enough for opset 13 and is read by every onnxruntime of the last years
            # (a newer onnx would otherwise stamp an IR version an older onnxruntime refuses).
            model.ir_version = 8
            options = ort.SessionOptions()
            if self.threads is not None:
                options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self.sessions[key] = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        return self.sessions[key]

    def prepare(self, case, x):
        shape = x.shape
        if case.axis is None:
            xr = x.reshape(-1)
            axis = 0
        else:
            xr = x
            axis = _positive_axis(case.axis, x.ndim)
        session = self._session(case.op, case.dtype, xr.ndim, axis)
        if case.out:
            out = np.empty_like(x)
            out_r = out.reshape(xr.shape)

            def run_out():
                binding = session.io_binding()
                binding.bind_cpu_input("X", xr)
                binding.bind_output("Y", "cpu", 0, out_r.dtype, out_r.shape, out_r.ctypes.data)
                session.run_with_iobinding(binding)
                return out

            return run_out
        feed = {"X": xr}
        if case.axis is None:
            return lambda: session.run(None, feed)[0].reshape(shape)
        return lambda: session.run(None, feed)[0]


# --------------------------------------------------------------------------------------------
# numba: the typical @njit(parallel=True, fastmath=True) row kernel a user writes


def _numba_kernels(numba):
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def softmax_rows(x, out):
        rows, n = x.shape
        for i in prange(rows):
            m = x[i, 0]
            for j in range(1, n):
                if x[i, j] > m:
                    m = x[i, j]
            s = 0.0
            for j in range(n):
                e = np.exp(x[i, j] - m)
                out[i, j] = e
                s += e
            inv = 1.0 / s
            for j in range(n):
                out[i, j] *= inv

    @njit(parallel=True, fastmath=True)
    def log_softmax_rows(x, out):
        rows, n = x.shape
        for i in prange(rows):
            m = x[i, 0]
            for j in range(1, n):
                if x[i, j] > m:
                    m = x[i, j]
            s = 0.0
            for j in range(n):
                s += np.exp(x[i, j] - m)
            lse = np.log(s)
            for j in range(n):
                out[i, j] = (x[i, j] - m) - lse

    return softmax_rows, log_softmax_rows


class Numba(Impl):
    name = "numba"

    def load(self):
        import numba

        self.module = numba
        self.version = numba.__version__
        self.kernels = _numba_kernels(numba)

    def set_threads(self, n):
        self.module.set_num_threads(min(n, self.module.config.NUMBA_NUM_THREADS))

    def threads_info(self):
        numba = self.module
        info = {
            "get_num_threads": numba.get_num_threads(),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
        }
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel function has run yet
            info["threading_layer"] = None
        return info

    def prepare(self, case, x):
        kernel = self.kernels[0] if case.op == "softmax" else self.kernels[1]
        if x.ndim == 1 or case.axis is None:
            xv = x.reshape(1, -1)
            transpose = False
        elif x.ndim == 2 and _positive_axis(case.axis, 2) == 1:
            xv, transpose = x, False
        elif x.ndim == 2:  # axis 0: run the row kernel on the transposed views (what users write)
            xv, transpose = x.T, True
        else:
            raise Unsupported("the row kernel handles 1-D/2-D arrays")

        def views(out):
            return out.T if transpose else out.reshape(xv.shape)

        if case.out:
            out = np.empty_like(x)
            out_v = views(out)

            def run_out():
                kernel(xv, out_v)
                return out

            run_out()  # compile outside timing
            return run_out

        def run():
            out = np.empty_like(x)
            kernel(xv, views(out))
            return out

        run()  # compile outside timing
        return run


# --------------------------------------------------------------------------------------------
# JAX (CPU): jax.nn.softmax under jit, x transferred with jnp.asarray, result read back with
# np.asarray, block_until_ready.


class Jax(Impl):
    name = "jax"

    def __init__(self):
        self.fns = {}

    def load(self):
        import jax

        jax.config.update(
            "jax_enable_x64", True
        )  # else float64 input is silently computed in float32
        jax.config.update("jax_platforms", "cpu")
        import jax.numpy as jnp

        self.module = jax
        self.jnp = jnp
        self.version = jax.__version__
        import jaxlib

        self.jaxlib_version = jaxlib.__version__

    def threads_info(self):
        return {
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "note": "no run-time knob; see affinity",
        }

    def prepare(self, case, x):
        if case.out:
            raise Unsupported("JAX arrays are immutable: no out=")
        jax, jnp = self.module, self.jnp
        key = (case.op, case.axis)
        if key not in self.fns:
            fn = jax.nn.softmax if case.op == "softmax" else jax.nn.log_softmax
            self.fns[key] = jax.jit(functools.partial(fn, axis=case.axis))
        f = self.fns[key]

        def run():
            return np.asarray(f(jnp.asarray(x)).block_until_ready())

        run()  # compile outside timing
        return run


# --------------------------------------------------------------------------------------------
# Memory-copy reference: the same number of bytes read and written.


class MemCopy(Impl):
    name = "memcopy"
    kind = "reference"

    def load(self):
        self.module = np
        self.version = np.__version__

    def prepare(self, case, x):
        dst = np.empty_like(x)
        return lambda: np.copyto(dst, x)


class ThreadedMemCopy(Impl):
    """np.copyto over contiguous chunks in a ThreadPoolExecutor (np.copyto releases the GIL)."""

    name = "memcopy-threaded"
    kind = "reference"

    def __init__(self):
        self.pool = None
        self.threads = 1

    def load(self):
        self.module = np
        self.version = np.__version__

    def set_threads(self, n):
        self.threads = n
        if self.pool is not None:
            self.pool.shutdown()
        self.pool = ThreadPoolExecutor(n) if n > 1 else None

    def threads_info(self):
        return {"workers": self.threads}

    def prepare(self, case, x):
        if self.pool is None:
            raise Unsupported("only with more than one thread")
        dst = np.empty_like(x)
        src_flat, dst_flat = x.reshape(-1), dst.reshape(-1)
        bounds = np.linspace(0, src_flat.size, self.threads + 1).astype(int)
        pairs = [(dst_flat[a:b], src_flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        pool = self.pool

        def copy(pair):
            np.copyto(pair[0], pair[1])

        return lambda: list(pool.map(copy, pairs))

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


# --------------------------------------------------------------------------------------------


def all_impls() -> list[Impl]:
    """Every implementation, in table order."""
    return [
        CSoftmax("exact"),
        CSoftmax("fast"),
        NumpyClassic(),
        Scipy(),
        Torch(),
        OnnxRuntime(),
        Numba(),
        Jax(),
        MemCopy(),
        ThreadedMemCopy(),
    ]


PEER_NAMES = ["numpy", "scipy", "torch", "onnxruntime", "numba", "jax"]
CSOFTMAX_NAMES = ["csoftmax-exact", "csoftmax-fast"]
COPY_NAMES = ["memcopy", "memcopy-threaded"]


def load_impls(names: list[str] | None = None, log=print) -> tuple[list[Impl], dict]:
    """Import what is installed. Returns (usable implementations, {name: reason skipped})."""
    usable, skipped = [], {}
    for impl in all_impls():
        if names is not None and impl.name not in names:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                impl.load()
        except Exception as exc:  # an optional peer: any import failure means "skip it"
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            skipped[impl.name] = reason
            log(f"note: {impl.name} skipped ({reason})")
            continue
        usable.append(impl)
    return usable, skipped
