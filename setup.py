"""Build script for csoftmax: one Cython extension, ``csoftmax._native``, over the C/SIMD kernels.

All metadata lives in pyproject.toml; this file only describes the extension and how to build it.

- Sources: ``csoftmax/_native.pyx`` plus every ``src_c/*.c`` and ``src_c/kernels/*.c``. The ISA
  kernels pick their instruction set themselves (``#pragma GCC target`` / function attributes), so
  one set of flags builds every file and the result runs on baseline CPUs.
- OpenMP: found by compiling, linking and running a tiny ``#pragma omp parallel`` program with the
  compiler in use. Without it the extension is built serial, with a warning.
- Environment variables read at build time:
    CSOFTMAX_NO_EXTENSION=1       build no extension at all (pure-Python package).
    CSOFTMAX_NO_OPENMP=1          build the extension without OpenMP, on purpose.
    CSOFTMAX_REQUIRE_EXTENSION=1  a failed extension build is an error (also when CIBUILDWHEEL=1);
                                  otherwise the failure is a warning and the package installs with
                                  its pure-NumPy fallback.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.errors import CompileError

HERE = os.path.dirname(os.path.abspath(__file__))
NATIVE_MODULE = "csoftmax._native"
PYX_SOURCE = "csoftmax/_native.pyx"
PUBLIC_HEADER = "src_c/csoftmax.h"  # shipped as <package>/include/csoftmax.h
MIN_CYTHON = (3, 1)

# gcc / clang (and mingw): one flag set for every file. -ffp-contract=off keeps the results the
# same on every ISA and compiler (no silent FMA contraction); never a host-tuned -march, never
# -ffast-math (the kernels rely on IEEE semantics for NaN/inf and their error terms).
UNIX_FLAGS = [
    "-O3",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fvisibility=hidden",
    "-std=gnu11",
    "-g0",
]
MSVC_FLAGS = ["/O2", "/fp:precise"]

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int threads = 0;
#pragma omp parallel
    {
#pragma omp atomic
        threads += 1;
    }
    printf("%d %d\n", threads, omp_get_max_threads());
    return threads >= 1 ? 0 : 1;
}
"""


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def extension_required() -> bool:
    return env_flag("CIBUILDWHEEL") or env_flag("CSOFTMAX_REQUIRE_EXTENSION")


def banner(message: str) -> None:
    """A warning that stands out in pip's verbose build log."""
    line = "*" * 78
    body = "\n".join(textwrap.wrap(message, 74))
    print(f"\n{line}\n{textwrap.indent(body, '* ')}\n{line}\n", file=sys.stderr, flush=True)


def c_sources() -> list[str]:
    """src_c/*.c then src_c/kernels/*.c, sorted, as POSIX paths relative to this directory."""
    sources = []
    for pattern in ("src_c/*.c", "src_c/kernels/*.c"):
        sources += sorted(glob.glob(pattern, root_dir=HERE))
    return [path.replace(os.sep, "/") for path in sources]


def headers() -> list[str]:
    """Every C header under src_c: a change to any of them rebuilds the extension."""
    return sorted(
        path.replace(os.sep, "/")
        for path in glob.glob("src_c/**/*.h", root_dir=HERE, recursive=True)
    )


class CSoftmaxBuildExt(build_ext):
    """build_ext that cythonizes lazily, probes OpenMP and applies the per-compiler flags.

    Cythonizing here (not at setup.py import) keeps sdist/egg_info free of Cython and numpy, and
    turns a missing Cython or a Cython error into a CompileError, which setuptools reports as a
    warning for an optional extension instead of failing the whole install.
    """

    def build_extensions(self) -> None:
        compiler_type = self.compiler.compiler_type
        base_flags = MSVC_FLAGS if compiler_type == "msvc" else UNIX_FLAGS
        openmp_compile, openmp_link = self.configure_openmp()
        for ext in self.extensions:
            ext.extra_compile_args = base_flags + openmp_compile + list(ext.extra_compile_args)
            ext.extra_link_args = openmp_link + list(ext.extra_link_args)
        jobs = self.compile_jobs()
        if jobs > 1 and not compile_in_parallel(self.compiler, jobs):
            jobs = 1
        print(
            f"csoftmax: compiler={compiler_type} flags={' '.join(base_flags)} "
            f"openmp={' '.join(openmp_compile) or 'off'} jobs={jobs}",
            flush=True,
        )
        super().build_extensions()

    def compile_jobs(self) -> int:
        """Source files compiled at once: `build_ext -j N`, else the CPUs this process may use."""
        if isinstance(self.parallel, int) and self.parallel > 0:
            return self.parallel
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            return os.cpu_count() or 1

    def build_extension(self, ext: Extension) -> None:
        if ext.name == NATIVE_MODULE:
            self.prepare_cython_extension(ext)
        super().build_extension(ext)

    def prepare_cython_extension(self, ext: Extension) -> None:
        """Add numpy's headers and replace the .pyx source by the C file Cython generates."""
        try:
            import numpy
        except ImportError as error:
            raise CompileError(f"numpy is needed to build {ext.name}: {error}") from error
        numpy_include = numpy.get_include()
        if numpy_include not in ext.include_dirs:
            ext.include_dirs.append(numpy_include)

        try:
            import Cython
            from Cython.Build import cythonize
        except ImportError as error:
            raise CompileError(f"Cython>=3.1 is needed to build {ext.name}: {error}") from error
        version = tuple(int(part) for part in Cython.__version__.split(".")[:2] if part.isdigit())
        if version < MIN_CYTHON:
            raise CompileError(
                f"Cython>=3.1 is needed to build {ext.name}, found {Cython.__version__}"
            )

        # Cythonize a fresh Extension holding only the .pyx; setuptools may already have renamed
        # the .pyx in ext.sources to .c (it does so when Cython was missing at import time).
        template = Extension(ext.name, sources=[PYX_SOURCE] + c_sources())
        try:
            (generated,) = cythonize(
                [template],
                build_dir=os.path.join(self.build_temp, "cython"),
                compiler_directives={"language_level": "3"},
                force=self.force,
                quiet=not self.verbose,
            )
        except Exception as error:  # Cython reports its own errors with non-distutils types
            raise CompileError(f"Cython failed on {PYX_SOURCE}: {error}") from error
        ext.sources = list(generated.sources)

    # -- OpenMP -------------------------------------------------------------------------------

    def configure_openmp(self) -> tuple[list[str], list[str]]:
        """(compile flags, link flags) that give a working OpenMP, or ([], []) with a warning."""
        if env_flag("CSOFTMAX_NO_OPENMP"):
            print("csoftmax: CSOFTMAX_NO_OPENMP=1, building without OpenMP (serial kernels).")
            return [], []
        failures = []
        for compile_flags, link_flags in self.openmp_candidates():
            ok, detail = self.probe_openmp(compile_flags, link_flags)
            if ok:
                print(
                    f"csoftmax: OpenMP works with {' '.join(compile_flags + link_flags)} "
                    f"({detail})",
                    flush=True,
                )
                return compile_flags, link_flags
            failures.append(f"[{' '.join(compile_flags + link_flags)}] {detail}")
        banner(
            "WARNING: csoftmax could not find a working OpenMP for this compiler, so the C "
            "kernels are being built SERIAL: results are the same, but large arrays will not "
            "use more than one core. Install OpenMP support (gcc: libgomp, which ships with "
            "gcc; macOS: `brew install libomp` with CPPFLAGS=-I$(brew --prefix libomp)/include "
            "and LDFLAGS=-L$(brew --prefix libomp)/lib) and reinstall, or set "
            "CSOFTMAX_NO_OPENMP=1 to silence this. Tried: " + "; ".join(failures)
        )
        return [], []

    def openmp_candidates(self) -> list[tuple[list[str], list[str]]]:
        if self.compiler.compiler_type == "msvc":
            return [(["/openmp"], [])]  # MSVC: compile flag only, vcomp is linked automatically
        candidates = [(["-fopenmp"], ["-fopenmp"])]
        if sys.platform == "darwin":
            # Apple clang has no -fopenmp driver flag: preprocess with it, link libomp.
            if "-fopenmp" in os.environ.get("CPPFLAGS", ""):
                candidates.append(([], ["-lomp"]))
            candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
        return candidates

    def probe_openmp(self, compile_flags: list[str], link_flags: list[str]) -> tuple[bool, str]:
        """Compile, link and run OPENMP_PROBE with the compiler setuptools will use."""
        with tempfile.TemporaryDirectory(prefix="csoftmax-openmp-") as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as handle:
                handle.write(OPENMP_PROBE)
            log = os.path.join(tmp, "probe.log")
            try:
                with RedirectOutput(log):
                    objects = self.compiler.compile(
                        [source], output_dir=tmp, extra_postargs=compile_flags
                    )
                    # The executable linker does not see LDFLAGS (only the shared-object linker
                    # does), so pass them on; macOS libomp is usually found through them.
                    extra_link = shlex.split(os.environ.get("LDFLAGS", ""))
                    if self.compiler.compiler_type == "msvc":
                        extra_link = []
                    self.compiler.link_executable(
                        objects, "probe", output_dir=tmp, extra_postargs=link_flags + extra_link
                    )
            except Exception as error:
                with open(log, errors="replace") as handle:
                    output = " ".join(handle.read().split())[-300:]
                return False, f"{type(error).__name__}: {output or error}"
            executable = os.path.join(tmp, "probe" + (self.compiler.exe_extension or ""))
            try:
                result = subprocess.run(
                    [executable], capture_output=True, text=True, timeout=120, check=False
                )
            except OSError as error:
                # Cross-compiling (e.g. an arm64 wheel on an x86-64 host): it compiled and
                # linked, which is what the build needs.
                return True, f"compiled and linked; cannot run here ({error})"
            if result.returncode != 0:
                return False, f"probe exited with {result.returncode}: {result.stderr.strip()}"
            return True, f"probe ran: threads/max_threads = {result.stdout.strip()}"


def compile_in_parallel(compiler, jobs: int) -> bool:
    """Make a distutils unix-style compiler build the files of one extension `jobs` at a time.

    distutils compiles one file after another; the Cython-generated C file alone takes longer
    than all the kernels together, so overlapping them roughly halves a rebuild on two cores.
    This is CCompiler.compile with its loop run on a thread pool (each file is a subprocess);
    compilers that override compile() (MSVC) are left alone. Returns whether it applied.
    """
    bases = [cls for cls in type(compiler).__mro__ if "_setup_compile" in vars(cls)]
    if not bases or type(compiler).compile is not bases[-1].compile:  # not distutils' loop
        return False
    if not all(hasattr(compiler, name) for name in ("_get_cc_args", "_compile")):
        return False

    serial_compile = compiler.compile

    def compile(
        sources,
        output_dir=None,
        macros=None,
        include_dirs=None,
        debug=False,
        extra_preargs=None,
        extra_postargs=None,
        depends=None,
    ):
        try:  # private distutils API: if it ever changes, compile one file after another
            macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
                output_dir, macros, include_dirs, sources, depends, extra_postargs
            )
            cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)
        except (TypeError, ValueError, AttributeError):
            return serial_compile(
                sources,
                output_dir,
                macros,
                include_dirs,
                debug,
                extra_preargs,
                extra_postargs,
                depends,
            )

        def compile_one(obj):
            if obj in build:  # absent when up to date
                source, extension = build[obj]
                compiler._compile(obj, source, extension, cc_args, extra_postargs, pp_opts)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(compile_one, objects))
        return objects

    compiler.compile = compile
    return True


class RedirectOutput:
    """Send this process's stdout/stderr file descriptors (and child processes') to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        self.file = open(self.path, "w")
        os.dup2(self.file.fileno(), 1)
        os.dup2(self.file.fileno(), 2)

    def __exit__(self, *exc_info) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.file.close()


class CSoftmaxBuildPy(build_py):
    """build_py that also installs the C header as csoftmax/include/csoftmax.h.

    Other C and Cython code builds against it (``csoftmax.get_include()``). For an editable
    install the package is the source directory, so the header is copied there (git-ignored).
    """

    def run(self) -> None:
        super().run()
        header = os.path.join(HERE, PUBLIC_HEADER)
        if not os.path.exists(header):
            print(f"csoftmax: {PUBLIC_HEADER} not found; no header installed", file=sys.stderr)
            return
        if self.editable_mode:
            package_dir = os.path.join(HERE, "csoftmax")
        else:
            package_dir = os.path.join(self.build_lib, "csoftmax")
        target_dir = os.path.join(package_dir, "include")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(PUBLIC_HEADER))
        shutil.copyfile(header, target)
        self.installed_header = target

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not self.editable_mode and os.path.exists(os.path.join(HERE, PUBLIC_HEADER)):
            outputs.append(os.path.join(self.build_lib, "csoftmax", "include", "csoftmax.h"))
        return outputs


def extensions() -> list[Extension]:
    if env_flag("CSOFTMAX_NO_EXTENSION"):
        print("csoftmax: CSOFTMAX_NO_EXTENSION=1, installing the pure-Python package only.")
        return []
    ext = Extension(
        NATIVE_MODULE,
        sources=[PYX_SOURCE] + c_sources(),
        depends=headers(),
        include_dirs=["src_c", "src_c/kernels"],
        define_macros=[
            # Hide NumPy's pre-1.7 deprecated API from the cimport-numpy fast path ...
            ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
            # ... and build against NumPy 2.x headers for any NumPy >= 1.23 at run time.
            ("NPY_TARGET_VERSION", "NPY_1_23_API_VERSION"),
        ],
        language="c",
        optional=not extension_required(),
    )
    return [ext]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": CSoftmaxBuildExt, "build_py": CSoftmaxBuildPy},
)
