"""Environment variables, show_config and `python -m csoftmax`, each in a
fresh interpreter (the backend and the ISA are chosen once, at import)."""

from __future__ import annotations

import json

import pytest
from _subproc import run_python
from conftest import AVAILABLE_ISAS, CSOFTMAX_ERR, KNOWN_ISAS, csoftmax, native

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(
        csoftmax is None or not hasattr(csoftmax, "softmax"),
        reason=CSOFTMAX_ERR or "csoftmax has no softmax yet",
    ),
]
needs_c = pytest.mark.skipif(native is None, reason="csoftmax._native is not built")

PROBE = """
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import csoftmax
import numpy as np
from reference import check_ulp, mp_reference
cfg = csoftmax.show_config(mode="dicts")
x = np.array([[0.0, -30.0, -31.0, 1e-3], [1000.0, 970.0, 969.0, -5.0]])
problems = []
for op in ["softmax", "log_softmax"]:
    problems += check_ulp(getattr(csoftmax, op)(x, axis=1), mp_reference(x, op, axis=1), op)
problems += check_ulp(np.asarray(csoftmax.logsumexp(x, axis=1)), mp_reference(x, "logsumexp", axis=1), "logsumexp")
print(json.dumps({
    "cfg": {k: v for k, v in cfg.items() if k in ("version", "backend", "isa", "isas", "openmp", "num_threads")},
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "problems": problems,
    "softmax_module": type(csoftmax.softmax).__module__ + ":" + getattr(csoftmax.softmax, "__module__", "?"),
}))
"""


def probe(**env):
    r = run_python(PROBE, timeout=90, **env)
    assert r.returncode == 0, r
    return r.json()


def test_default_environment():
    d = probe()
    if native is not None:
        assert d["warnings"] == [], d["warnings"]  # a normal import warns about nothing
    else:  # without the extension csoftmax says so, once
        assert len(d["warnings"]) == 1 and d["warnings"][0][0] == "RuntimeWarning", d["warnings"]
    assert d["problems"] == []
    cfg = d["cfg"]
    assert set(cfg) == {"version", "backend", "isa", "isas", "openmp", "num_threads"}, cfg
    assert cfg["version"] == csoftmax.__version__
    assert cfg["backend"] in ("c", "python")
    assert isinstance(cfg["openmp"], bool)
    assert isinstance(cfg["num_threads"], int) and cfg["num_threads"] >= 1
    assert isinstance(cfg["isas"], list)
    if native is not None:
        assert cfg["backend"] == "c"
        assert cfg["isas"] == AVAILABLE_ISAS
        assert cfg["isa"] == AVAILABLE_ISAS[-1]  # the best one, by default
        assert "scalar" in cfg["isas"]


def test_backend_python():
    d = probe(CSOFTMAX_BACKEND="python")
    assert d["cfg"]["backend"] == "python"
    assert d["problems"] == []
    assert d["warnings"] == []
    assert "_fallback" in d["softmax_module"], d["softmax_module"]


@needs_c
@pytest.mark.parametrize("isa", AVAILABLE_ISAS or ["scalar"])
def test_isa_override(isa):
    d = probe(CSOFTMAX_ISA=isa)
    assert d["cfg"]["backend"] == "c"
    assert d["cfg"]["isa"] == isa
    assert d["warnings"] == []
    assert d["problems"] == []


@needs_c
@pytest.mark.parametrize("isa", [i for i in KNOWN_ISAS if i not in AVAILABLE_ISAS] or ["none"])
def test_unavailable_isa_warns_and_falls_back(isa):
    if isa == "none":
        pytest.skip("every known ISA is available here")
    d = probe(CSOFTMAX_ISA=isa)
    assert d["cfg"]["isa"] in AVAILABLE_ISAS
    assert d["problems"] == []
    assert any(isa in msg for _, msg in d["warnings"]), d["warnings"]


@needs_c
@pytest.mark.parametrize("value", ["sse9", "AVX-2 please", ""])
def test_unknown_isa_warns(value):
    d = probe(CSOFTMAX_ISA=value)
    assert d["cfg"]["isa"] in AVAILABLE_ISAS
    assert d["problems"] == []
    if value:
        assert d["warnings"], "an unknown CSOFTMAX_ISA must warn"
        assert any(value in msg for _, msg in d["warnings"]), d["warnings"]


@needs_c
def test_isa_names_are_case_insensitive_or_warn():
    # Not in the contract either way: "AVX2" must either select avx2 or warn.
    if "avx2" not in AVAILABLE_ISAS:
        pytest.skip("no avx2 here")
    d = probe(CSOFTMAX_ISA="AVX2")
    assert d["cfg"]["isa"] == "avx2" or d["warnings"], d


def test_show_config_prints(capsys, pkg):
    assert pkg.show_config() is None
    out = capsys.readouterr().out
    cfg = pkg.show_config(mode="dicts")
    assert pkg.__version__ in out
    assert cfg["backend"] in out
    assert isinstance(cfg, dict)


def test_show_config_dicts_is_json_serialisable(pkg):
    cfg = pkg.show_config(mode="dicts")
    json.dumps(cfg)
    for key in ("version", "backend", "isa", "isas", "openmp", "num_threads"):
        assert key in cfg


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["default", "python"])
def test_python_m_csoftmax(backend):
    env = {"CSOFTMAX_BACKEND": "python"} if backend == "python" else {}
    r = run_python(args=["-m", "csoftmax"], timeout=180, **env)
    assert not r.timed_out, r
    assert r.returncode == 0, r
    assert csoftmax.__version__ in r.stdout
