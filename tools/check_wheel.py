"""Audit built csoftmax wheels before they are published or installed (read-only).

    python tools/check_wheel.py [--identifiers FILE] [--allow-pure] WHEEL [WHEEL ...]

For every wheel, prints its file name, tags and size, and fails when:
- it holds anything but the package's Python files, its .pxd declarations, the public C header
  (csoftmax/include/csoftmax.h), the compiled extension, the libraries vendored by the repair
  step and the .dist-info: no .c/.pyx/.o/.obj/.html build debris, no tests;
- it has no compiled extension (unless --allow-pure);
- it is a platform wheel without its OpenMP runtime vendored (libgomp on Linux, libomp on macOS,
  vcomp140 on Windows), or the runtime's license text is missing from its LICENSE
  (tools/bundle_licenses.py appends it).
With --identifiers FILE (the output of `cibuildwheel --print-build-identifiers` for every
platform), also fails unless the wheels and the identifiers match one to one.
"""

from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundle_licenses import MARKER, license_member, runtimes_in

ALLOWED = [
    r"csoftmax/[A-Za-z_][A-Za-z0-9_]*\.py",
    r"csoftmax/[A-Za-z_][A-Za-z0-9_]*\.pxd",
    r"csoftmax/py\.typed",
    r"csoftmax/include/csoftmax\.h",
    r"csoftmax/_native\.[^/]+\.(so|pyd)",  # cpython-311-x86_64-linux-gnu.so, cp311-win_amd64.pyd
    r"csoftmax\.libs/[^/]+",  # vendored by auditwheel / delvewheel
    r"csoftmax/\.dylibs/[^/]+",  # vendored by delocate
    r"csoftmax-[^/]+\.dist-info/.+",
]
ALLOWED_RE = re.compile("|".join(f"(?:{pattern})" for pattern in ALLOWED))
EXTENSION_RE = re.compile(r"csoftmax/_native\.[^/]+\.(so|pyd)")
# The runtime each platform's wheels must vendor (see RUNTIMES in bundle_licenses.py).
RUNTIME_FOR_PLATFORM = {"linux": "GNU libgomp", "macosx": "LLVM libomp", "win": "MSVC vcomp"}


def wheel_tags(name: str) -> tuple[str, str, list[str]]:
    """(python tag, abi tag, [platform tags]) from a wheel file name."""
    parts = name[: -len(".whl")].split("-")
    return parts[-3], parts[-2], parts[-1].split(".")


def platform_family(platform: str) -> str:
    for family in ("manylinux", "musllinux", "macosx", "win"):
        if platform.startswith(family):
            return family
    return "linux" if platform.startswith("linux") else platform


def identifier_of(name: str) -> set[str]:
    """The cibuildwheel identifiers a wheel file name satisfies (cp314t-musllinux_aarch64, ...)."""
    python, abi, platforms = wheel_tags(name)
    build = abi if abi.endswith("t") else python
    found = set()
    for platform in platforms:
        family = platform_family(platform)
        if family in ("manylinux", "musllinux", "macosx"):
            arch = re.sub(r"^(manylinux|musllinux|macosx)_\d+_\d+_", "", platform)
            found.add(f"{build}-{family}_{arch}")
        else:
            found.add(f"{build}-{platform}")
    return found


def check(wheel: Path, allow_pure: bool) -> list[str]:
    problems = []
    python, abi, platforms = wheel_tags(wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        wheel_file = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        wheel_lines = archive.read(wheel_file).decode().splitlines()
        tags = [line.split(":", 1)[1].strip() for line in wheel_lines if line.startswith("Tag:")]
        debris = [n for n in names if not ALLOWED_RE.fullmatch(n)]
        if debris:
            problems.append(f"unexpected files (build debris?): {', '.join(debris)}")
        extensions = [n for n in names if EXTENSION_RE.fullmatch(n)]
        extension_bytes = sum(archive.getinfo(n).file_size for n in extensions)
        if not extensions and not allow_pure:
            problems.append("no compiled extension csoftmax/_native.*")
        try:
            runtimes = runtimes_in(names)
        except ValueError as error:
            problems.append(str(error))
            runtimes = []
        family = platform_family(platforms[0])
        wanted = RUNTIME_FOR_PLATFORM.get("linux" if "linux" in family else family)
        found = [name for name, _, _ in runtimes]
        if extensions and wanted and family != "linux" and wanted not in found:
            problems.append(f"{wanted} is not vendored (found: {found or 'nothing'})")
        if runtimes:
            text = archive.read(license_member(names)).decode("utf-8", "replace")
            if MARKER not in text:
                problems.append("the vendored runtimes' licenses are not in LICENSE")
            for name, _, files in runtimes:
                if f"{name}: " not in text:
                    problems.append(f"the license of {name} ({files[0]}) is not in LICENSE")
    size = wheel.stat().st_size
    vendored = ", ".join(f"{n} ({len(f)} file)" for n, _, f in runtimes) or "nothing"
    print(f"{wheel.name}")
    print(f"    tags: {', '.join(tags)}; size: {size:,} bytes ({size / 1024:.0f} KiB)")
    print(
        f"    extension: {', '.join(extensions) or 'none'} ({extension_bytes:,} bytes unpacked); "
        f"vendored: {vendored}"
    )
    for problem in problems:
        print(f"    PROBLEM: {problem}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--identifiers", type=Path, help="cibuildwheel identifiers, one a line")
    parser.add_argument("--allow-pure", action="store_true", help="a wheel may lack the extension")
    args = parser.parse_args()

    failed = 0
    for wheel in args.wheels:
        failed += bool(check(wheel, args.allow_pure))
    if args.identifiers:
        expected = {line.strip() for line in args.identifiers.read_text().split() if line.strip()}
        built: dict[str, list[str]] = {}
        for wheel in args.wheels:
            for identifier in identifier_of(wheel.name) & expected or {f"?{wheel.name}"}:
                built.setdefault(identifier, []).append(wheel.name)
        missing = sorted(expected - set(built))
        extra = sorted(i for i in built if i not in expected)
        doubled = sorted(i for i, names in built.items() if len(names) > 1)
        print(f"identifiers: {len(expected)} expected, {len(built) - len(extra)} built")
        for label, items in (("missing", missing), ("unexpected", extra), ("doubled", doubled)):
            if items:
                print(f"    PROBLEM: {label}: {', '.join(items)}")
                failed += 1
    print(f"check_wheel: {len(args.wheels)} wheels, {'FAILED' if failed else 'all OK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
