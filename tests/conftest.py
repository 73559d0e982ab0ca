"""Shared fixtures of the csoftmax test-suite.

``impl``       one entry per implementation available here: "c-<isa>" for each
               ISA of ``csoftmax._native.available_isas()`` (activated with
               ``_native.set_isa`` and restored afterwards) and "python" (the
               pure-NumPy ``csoftmax._fallback``).  When the extension is not
               built, a single "c" entry is *skipped* (not silently dropped).
``c_impl``     the C entries only.
``fallback``   the python entry.
``precision``  "exact" and "fast".

Every test is run with RuntimeWarning turned into an error (the contract
says no RuntimeWarning is ever emitted); the oracles (scipy) are called
with warnings silenced.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:  # `import reference` from the test modules
    sys.path.insert(0, HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        derandomize=True,  # reproducible in CI
        deadline=None,
        database=None,
        max_examples=100,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
    )
    settings.register_profile(
        "dev",
        deadline=None,
        max_examples=300,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass


def _try_import(name):
    try:
        return importlib.import_module(name), None
    except Exception as e:  # ImportError, or a half-written package
        return None, f"{name} not importable: {type(e).__name__}: {e}"


csoftmax, CSOFTMAX_ERR = _try_import("csoftmax")
native, NATIVE_ERR = _try_import("csoftmax._native")
fallback_mod, FALLBACK_ERR = _try_import("csoftmax._fallback")

AVAILABLE_ISAS: list[str] = []
if native is not None:
    try:
        AVAILABLE_ISAS = list(native.available_isas())
    except Exception as e:  # pragma: no cover
        NATIVE_ERR = f"csoftmax._native.available_isas() failed: {type(e).__name__}: {e}"
        native = None

KNOWN_ISAS = ("scalar", "avx2", "avx512", "neon")


class Impl:
    """One implementation: .softmax / .log_softmax / .logsumexp."""

    def __init__(self, id, kind, module, isa=None):
        self.id = id
        self.kind = kind  # "c" or "python"
        self.module = module
        self.isa = isa

    @property
    def softmax(self):
        return self.module.softmax

    @property
    def log_softmax(self):
        return self.module.log_softmax

    @property
    def logsumexp(self):
        return self.module.logsumexp

    def fn(self, op):
        return getattr(self.module, op)

    def call(self, op, x, axis=None, precision="exact", **kw):
        """op(x, axis) with precision passed where the function takes one."""
        f = getattr(self.module, op)
        if op == "logsumexp":
            return f(x, axis=axis, **kw)
        return f(x, axis=axis, precision=precision, **kw)

    @contextlib.contextmanager
    def active(self):
        if self.kind == "c":
            prev = native.get_isa()
            native.set_isa(self.isa)
            try:
                yield self
            finally:
                native.set_isa(prev)
        else:
            yield self

    def __repr__(self):
        return f"<Impl {self.id}>"


C_IMPLS = [Impl(f"c-{isa}", "c", native, isa) for isa in AVAILABLE_ISAS]
PY_IMPL = Impl("python", "python", fallback_mod) if fallback_mod is not None else None


def _c_params():
    if C_IMPLS:
        return [pytest.param(i, id=i.id) for i in C_IMPLS]
    return [pytest.param(None, id="c", marks=pytest.mark.skip(reason=NATIVE_ERR or "no ISA"))]


def _py_params():
    if PY_IMPL is not None:
        return [pytest.param(PY_IMPL, id="python")]
    return [pytest.param(None, id="python", marks=pytest.mark.skip(reason=FALLBACK_ERR))]


IMPL_PARAMS = _c_params() + _py_params()
C_PARAMS = _c_params()


@pytest.fixture(params=IMPL_PARAMS)
def impl(request):
    with request.param.active() as i:
        yield i


@pytest.fixture(params=C_PARAMS)
def c_impl(request):
    with request.param.active() as i:
        yield i


@pytest.fixture
def fallback():
    if PY_IMPL is None:
        pytest.skip(FALLBACK_ERR)
    return PY_IMPL


@pytest.fixture(params=["exact", "fast"])
def precision(request):
    return request.param


@pytest.fixture
def pkg():
    """The public csoftmax package."""
    if csoftmax is None:
        pytest.skip(CSOFTMAX_ERR)
    return csoftmax


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def scipy_call(op, *args, **kw):
    """The semantic oracle, with its warnings (which it does emit) silenced."""
    import scipy.special

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return getattr(scipy.special, op)(*args, **kw)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds (still in the default run)"
    )
    config.addinivalue_line("markers", "subprocess: spawns a Python subprocess")


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("error::RuntimeWarning"))


def pytest_report_header(config):
    lines = [f"numpy {np.__version__}"]
    if csoftmax is None:
        lines.append(f"csoftmax: {CSOFTMAX_ERR}")
    else:
        lines.append(f"csoftmax from {getattr(csoftmax, '__file__', '?')}")
    lines.append(
        f"csoftmax._native: {'ISAs ' + ', '.join(AVAILABLE_ISAS) if native else NATIVE_ERR}"
    )
    lines.append(f"csoftmax._fallback: {'ok' if fallback_mod else FALLBACK_ERR}")
    return lines
