"""Test an installed csoftmax against its test suite, from outside the source tree.

cibuildwheel's test-command runs it on every wheel, and tools/prove_wheels.sh on the wheels and
the sdist install it builds here. Run it from a directory that holds ``tests/`` and
``pyproject.toml`` (the pytest configuration) but no ``csoftmax/`` package, so that
``import csoftmax`` can only find the installed one:

    python tools/wheel_tests.py [--backend c|python] [--suite full|quick|none]
                                [--isa-repeats | --no-isa-repeats] [--junit-dir DIR]
                                [--label NAME] [--no-vendored-openmp] [-- PYTEST_ARGS...]

1. Checks what is installed: csoftmax is imported from site-packages, its backend is the
   expected one, and, for the C backend, it was built with OpenMP and the OpenMP runtime that
   threadpoolctl sees in this process is the copy vendored inside the wheel (csoftmax.libs/ or
   csoftmax/.dylibs/). On a free-threaded interpreter, importing csoftmax must leave the GIL off.
2. Runs the suite: ``full`` is every test (the suite itself runs each kernel test once per ISA
   of ``csoftmax._native.available_isas()``); ``quick`` is a representative few files.
3. ISA repeats (C backend): for each ISA available here, a run with ``CSOFTMAX_ISA=<isa>``, so
   that the import-time dispatch itself picks that kernel, of (a) every test that goes through
   that dispatch: those that neither take an implementation (the ``impl``, ``c_impl`` and
   ``fallback`` fixtures and conftest's ``Impl`` parameters switch ISA explicitly) nor run in a
   fresh subprocess (which clears CSOFTMAX_* and sets its own); (b) the kernel tests of
   REPEAT_FILES for that ISA's implementation only. A few seconds each: the full run has
   already run every kernel test on every ISA.

Prints one "N passed, N failed, N skipped" line per pytest run and a total; the exit status is
non-zero if any check or run failed. Standard library only (plus what the suite needs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK_FILES = ["tests/test_semantics.py", "tests/test_errors.py", "tests/test_reference.py"]
REPEAT_FILES = {"test_semantics.py", "test_errors.py"}  # kernel tests redone per forced ISA
PER_IMPLEMENTATION_FIXTURES = {"impl", "c_impl", "fallback"}
ISA_SUBSET_ENV = "CSOFTMAX_WHEEL_TESTS_ISA_SUBSET"


# -- pytest plugin (loaded with `-p wheel_tests` in the ISA repeats) ---------------------------


def pytest_sessionstart(session):
    """Refuse to run an ISA repeat whose CSOFTMAX_ISA did not take effect."""
    wanted = os.environ.get("CSOFTMAX_ISA")
    if not (os.environ.get(ISA_SUBSET_ENV) and wanted):
        return
    import pytest

    from csoftmax import _native

    if _native.get_isa() != wanted:
        pytest.exit(f"CSOFTMAX_ISA={wanted} but the kernel in use is {_native.get_isa()}", 3)


def implementations(item) -> list:
    """The conftest `Impl` objects a test is parametrised with (directly or via a fixture)."""
    callspec = getattr(item, "callspec", None)
    return [v for v in callspec.params.values() if type(v).__name__ == "Impl"] if callspec else []


def in_isa_repeat(item, isa: str) -> bool:
    """Whether a test belongs to the ISA repeat for `isa` (see the module docstring)."""
    if item.get_closest_marker("subprocess") is not None:
        return False  # a fresh interpreter that clears CSOFTMAX_* and sets its own
    chosen = implementations(item)
    if not chosen and not PER_IMPLEMENTATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True  # goes through the dispatch made at import time
    return (
        Path(str(item.fspath)).name in REPEAT_FILES
        and bool(chosen)
        and all(impl.kind == "c" and impl.isa == isa for impl in chosen)
    )


def pytest_collection_modifyitems(config, items):
    isa = os.environ.get("CSOFTMAX_ISA")
    if not (os.environ.get(ISA_SUBSET_ENV) and isa):
        return
    keep, drop = [], []
    for item in items:
        (keep if in_isa_repeat(item, isa) else drop).append(item)
    items[:] = keep
    if drop:
        config.hook.pytest_deselected(items=drop)


# -- driver ------------------------------------------------------------------------------------


def fail(message: str) -> None:
    print(f"wheel_tests: ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def inside(path: str | Path, directory: str | Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(directory).resolve())
        return True
    except ValueError:
        return False


def check_installation(args: argparse.Namespace) -> list[str]:
    """Check the installed package; return the ISAs available here."""
    if Path("csoftmax").exists():
        fail(f"{Path.cwd()} holds a csoftmax/ directory: run from outside the source tree")
    if not Path("tests").is_dir():
        fail(f"no tests/ directory in {Path.cwd()}")
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

    import csoftmax

    site_dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    where = Path(csoftmax.__file__).resolve()
    print(f"wheel_tests: Python {sys.version.split()[0]} ({sys.executable})")
    print(f"wheel_tests: csoftmax {csoftmax.__version__} from {where.parent}")
    if not any(inside(where, site) for site in site_dirs):
        fail(f"csoftmax was imported from {where}, not from {' or '.join(sorted(site_dirs))}")
    if free_threaded:
        if sys._is_gil_enabled():  # type: ignore[attr-defined]
            fail("importing csoftmax re-enabled the GIL on a free-threaded interpreter")
        print("wheel_tests: free-threaded interpreter; the GIL stays disabled after import")

    config = csoftmax.show_config(mode="dicts")
    print(f"wheel_tests: show_config: {config}")
    if config["backend"] != args.backend:
        fail(f"backend is {config['backend']!r}, expected {args.backend!r}")
    if args.backend != "c":
        return []
    if not config["openmp"]:
        fail("the extension was built without OpenMP")
    if args.vendored_openmp:
        from threadpoolctl import threadpool_info

        package = where.parent
        vendor_dirs = [package.parent / "csoftmax.libs", package / ".dylibs"]
        runtimes = [m for m in threadpool_info() if m.get("user_api") == "openmp"]
        for module in runtimes:
            print(
                f"wheel_tests: threadpoolctl: {module.get('prefix')} {module.get('version')} "
                f"num_threads={module.get('num_threads')} {module.get('filepath')}"
            )
        vendored = [
            m for m in runtimes if any(inside(m["filepath"], d) for d in vendor_dirs if d.is_dir())
        ]
        if not vendored:
            fail(
                "threadpoolctl finds no OpenMP runtime vendored in the wheel "
                f"(looked in {', '.join(str(d) for d in vendor_dirs)}); found: "
                f"{[m.get('filepath') for m in runtimes]}"
            )
    return list(config["isas"])


def junit_counts(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a JUnit XML file; failed counts errors too."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests - failed - skipped, failed, skipped


def run_pytest(label: str, targets: list[str], extra_env: dict[str, str], args) -> tuple:
    junit = Path(args.junit_dir) / f"{args.label}{label}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-ra"]
    command += [f"--junitxml={junit}", *args.pytest_args, *targets]
    env = dict(os.environ, **extra_env)
    if extra_env.get(ISA_SUBSET_ENV):  # make this file importable as the plugin `wheel_tests`
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        command[3:3] = ["-p", "wheel_tests"]
    shown = " ".join(f"{k}={v}" for k, v in extra_env.items() if k != ISA_SUBSET_ENV)
    print(
        f"\nwheel_tests: [{label}] {shown} {' '.join(command[1:])}".replace("  ", " "), flush=True
    )
    started = time.monotonic()
    returncode = subprocess.call(command, env=env)
    seconds = time.monotonic() - started
    passed, failed, skipped = junit_counts(junit) if junit.exists() else (0, 0, 0)
    if returncode != 0 and failed == 0:
        failed = 1  # pytest stopped before reporting (exit from the plugin, crash, no tests)
    print(
        f"wheel_tests: [{label}] {passed} passed, {failed} failed, {skipped} skipped "
        f"in {seconds:.0f} s (pytest exit status {returncode})",
        flush=True,
    )
    return passed, failed, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["c", "python"], default="c")
    parser.add_argument("--suite", choices=["full", "quick", "none"], default="full")
    parser.add_argument("--isa-repeats", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--vendored-openmp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="require the OpenMP runtime seen by threadpoolctl to be the wheel's own copy",
    )
    parser.add_argument("--junit-dir", default="wheel-tests-junit")
    parser.add_argument("--label", default="", help="prefix of the JUnit file names")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed on to pytest")
    args = parser.parse_args()

    isas = check_installation(args)
    results = []
    if args.suite != "none":
        targets = ["tests"] if args.suite == "full" else QUICK_FILES
        results.append(run_pytest(args.suite, targets, {}, args))
    if args.isa_repeats and args.backend == "c":
        for isa in isas:
            env = {"CSOFTMAX_ISA": isa, ISA_SUBSET_ENV: "1"}
            results.append(run_pytest(f"isa-{isa}", ["tests"], env, args))
    passed, failed, skipped = (sum(column) for column in zip(*results)) if results else (0, 0, 0)
    print(f"\nwheel_tests: {len(results)} pytest runs")
    print(f"wheel_tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
