"""show_config(): what this csoftmax is built with and running on."""

import os
import platform

import csoftmax


def _native_facts():
    if csoftmax.backend != "c":
        return {"isa": None, "isas": [], "openmp": False}
    from csoftmax import _native

    return {
        "isa": _native.get_isa(),
        "isas": _native.available_isas(),
        "openmp": _native.openmp_enabled(),
    }


def show_config(mode="stdout"):
    """Print the configuration, or return it as a dict with mode="dicts"."""
    import numpy

    config = {
        "version": csoftmax.__version__,
        "backend": csoftmax.backend,
        **_native_facts(),
        "num_threads": csoftmax.get_num_threads(),
        "environment": {
            name: os.environ[name]
            for name in (
                "CSOFTMAX_BACKEND",
                "CSOFTMAX_ISA",
                "CSOFTMAX_BUFFER_CACHE_MB",
                "OMP_NUM_THREADS",
            )
            if name in os.environ
        },
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": platform.machine(),
    }
    if mode == "dicts":
        return config
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts', not {mode!r}")
    width = max(len(key) for key in config)
    for key, value in config.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key:<{width}} : {value}")
    return None


def get_include():
    """Directory holding csoftmax.h, for C code built against csoftmax."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")
