"""C-level smoke of csoftmax.pxd: a tiny Cython module that cimports every
declaration of ``csoftmax/csoftmax.pxd`` is translated with Cython and the C
is compiled (``-fsyntax-only``, no link: the C symbols live hidden inside the
extension) against the shipped header, with function-pointer assignments
so that any pxd/header signature mismatch is a compile error.
Skipped without Cython, a C compiler, the .pxd or the header."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest
from _subproc import package_parent

SMOKE = r"""
# cython: language_level=3
from libc.stdint cimport int64_t
from csoftmax.csoftmax cimport (
    csm_operation, csm_precision, csm_isa,
    CSM_SOFTMAX, CSM_LOG_SOFTMAX, CSM_LOGSUMEXP, CSM_EXACT, CSM_FAST,
    CSM_ISA_SCALAR, CSM_ISA_AVX2, CSM_ISA_AVX512, CSM_ISA_NEON, CSM_ISA_COUNT,
    CSM_OK, CSM_ERROR_NO_MEMORY, CSM_ERROR_BAD_ARGUMENT,
    CSM_ISA_INIT_OK, CSM_ISA_INIT_UNKNOWN_NAME, CSM_ISA_INIT_UNAVAILABLE,
    csm_reduce_f32, csm_reduce_f64, csm_get_num_threads, csm_set_num_threads,
    csm_openmp_enabled, csm_init, csm_isa_name, csm_isa_from_name, csm_isa_available,
    csm_get_isa, csm_set_isa)

ctypedef int (*reduce_f32_t)(csm_operation, csm_precision, const float *, float *,
                             int64_t, int64_t, int64_t) noexcept nogil
ctypedef int (*reduce_f64_t)(csm_operation, csm_precision, const double *, double *,
                             int64_t, int64_t, int64_t) noexcept nogil
ctypedef int (*int_void_t)() noexcept nogil
ctypedef void (*void_int_t)(int) noexcept nogil
ctypedef const char *(*name_t)(int) noexcept nogil
ctypedef int (*from_name_t)(const char *) noexcept nogil
ctypedef int (*int_int_t)(int) noexcept nogil

def smoke():
    cdef reduce_f32_t f32 = csm_reduce_f32
    cdef reduce_f64_t f64 = csm_reduce_f64
    cdef int_void_t g = csm_get_num_threads
    cdef void_int_t s = csm_set_num_threads
    cdef int_void_t o = csm_openmp_enabled
    cdef int_void_t i = csm_init
    cdef name_t n = csm_isa_name
    cdef from_name_t fn = csm_isa_from_name
    cdef int_int_t a = csm_isa_available
    cdef int_void_t gi = csm_get_isa
    cdef int_int_t si = csm_set_isa
    cdef double x[3]
    cdef double y[3]
    cdef int rc
    x[0] = 0.0; x[1] = 1.0; x[2] = 2.0
    with nogil:
        rc = csm_reduce_f64(CSM_SOFTMAX, CSM_EXACT, x, y, 1, 3, 1)
    return (rc, <int>CSM_LOG_SOFTMAX, <int>CSM_LOGSUMEXP, <int>CSM_FAST, <int>CSM_ISA_COUNT,
            <int>CSM_OK, <int>CSM_ERROR_NO_MEMORY, <int>CSM_ERROR_BAD_ARGUMENT,
            <int>CSM_ISA_INIT_OK, <int>CSM_ISA_INIT_UNKNOWN_NAME, <int>CSM_ISA_INIT_UNAVAILABLE,
            <int>CSM_ISA_SCALAR, <int>CSM_ISA_AVX2, <int>CSM_ISA_AVX512, <int>CSM_ISA_NEON)
"""


def _header_dir():
    parent = package_parent()
    candidates = []
    try:
        import csoftmax

        candidates.append(csoftmax.get_include())
    except Exception:
        pass
    candidates += [os.path.join(parent, "csoftmax", "include"), os.path.join(parent, "src_c")]
    for d in candidates:
        if os.path.exists(os.path.join(d, "csoftmax.h")):
            return d
    return None


@pytest.mark.slow
def test_pxd_cimports_and_matches_header(tmp_path):
    cython = pytest.importorskip("Cython")
    parent = package_parent()
    pxd = os.path.join(parent, "csoftmax", "csoftmax.pxd")
    if not os.path.exists(pxd):
        pytest.skip("csoftmax/csoftmax.pxd not found")
    hdir = _header_dir()
    if hdir is None:
        pytest.skip("csoftmax.h not found (neither csoftmax.get_include() nor src_c/)")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "csm_smoke.pyx"
    src.write_text(SMOKE)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cython",
            "-3",
            "-I",
            parent,
            str(src),
            "-o",
            str(tmp_path / "csm_smoke.c"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"Cython {cython.__version__} failed:\n{r.stdout}\n{r.stderr}"
    r = subprocess.run(
        [
            cc,
            "-fsyntax-only",
            "-Werror=incompatible-pointer-types",
            "-Werror=implicit-function-declaration",
            "-Werror=int-conversion",
            "-I",
            hdir,
            "-I",
            sysconfig.get_paths()["include"],
            str(tmp_path / "csm_smoke.c"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"C compile failed:\n{r.stdout}\n{r.stderr[-5000:]}"


def test_get_include_has_the_header(pkg):
    """csoftmax.get_include() (used by C embedders) points at csoftmax.h once
    installed; an in-place build of a checkout may not have copied it yet."""
    d = pkg.get_include()
    if not os.path.exists(os.path.join(d, "csoftmax.h")):
        if os.path.exists(os.path.join(package_parent(), "src_c", "csoftmax.h")):
            pytest.skip("in-place build of a checkout: header not copied to get_include()")
        pytest.fail(f"csoftmax.h not in get_include() = {d}")


CIMPORT_USER = r"""
# cython: language_level=3
from csoftmax._native cimport reduce_f64
from csoftmax.csoftmax cimport CSM_SOFTMAX, CSM_EXACT

def softmax_rows(const double[:, ::1] x, double[:, ::1] y):
    cdef int status
    with nogil:
        status = reduce_f64(CSM_SOFTMAX, CSM_EXACT, &x[0, 0], &y[0, 0], x.shape[0], x.shape[1], 1)
    return status
"""

BUILD_USER = r"""
import sys
from setuptools import Extension, setup
from Cython.Build import cythonize
setup(name="csm_user", script_args=["build_ext", "--inplace", "-q"],
      ext_modules=cythonize([Extension("csm_user", ["csm_user.pyx"], include_dirs=[sys.argv[1]])],
                            include_path=[sys.argv[2]], quiet=True))
"""


@pytest.mark.slow
def test_other_cython_code_cimports_the_kernels(tmp_path, pkg):
    """A separate extension cimports reduce_f64 from csoftmax._native (no
    linking: Cython's C-API capsule) and gets the same bits as csoftmax."""
    pytest.importorskip("Cython")
    if pkg.show_config(mode="dicts")["backend"] != "c":
        pytest.skip("the C extension is not built")
    hdir = _header_dir()
    if hdir is None or shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs csoftmax.h and a C compiler")
    (tmp_path / "csm_user.pyx").write_text(CIMPORT_USER)
    (tmp_path / "build_user.py").write_text(BUILD_USER)
    parent = package_parent()
    r = subprocess.run(
        [sys.executable, "build_user.py", hdir, parent],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, (
        f"building the cimporting extension failed:\n{r.stdout}\n{r.stderr[-5000:]}"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import csm_user
    finally:
        sys.path.remove(str(tmp_path))
    import numpy as np

    x = np.random.default_rng(5).standard_normal((7, 33)) * 50
    y = np.empty_like(x)
    assert csm_user.softmax_rows(x, y) == 0
    assert np.array_equal(y, pkg.softmax(x, axis=-1))
