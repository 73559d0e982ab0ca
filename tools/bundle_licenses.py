"""Append the license texts of the runtime libraries a repaired wheel vendors to its LICENSE.

Run after the repair step (auditwheel, delocate, delvewheel), which copies shared libraries into
the wheel: libgomp on Linux, LLVM's libomp on macOS, MSVC's vcomp140.dll on Windows. Their
licenses must travel with them, so this script appends, to the wheel's own license file
(``*.dist-info/licenses/LICENSE``), one section per vendored runtime taken from
``tools/licenses/``, and rewrites RECORD to match. A wheel that vendors nothing is left alone;
a vendored library that has no license text here is an error, so a new dependency cannot ship
unnoticed. Running it twice gives the same wheel. Standard library only: it runs inside every
cibuildwheel build environment.

    python tools/bundle_licenses.py WHEEL_OR_DIRECTORY [...]

This is done on the repaired wheel instead of appending to LICENSE in a before-build step (as
scikit-learn does) so that the source tree is never modified and only the runtimes that are
actually in the wheel are declared.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

LICENSE_DIR = Path(__file__).resolve().parent / "licenses"
MARKER = "=" * 78 + "\nThird-party runtime libraries bundled in this binary wheel\n" + "=" * 78

# (name, license file in tools/licenses, pattern of the vendored file's path in the wheel)
RUNTIMES = [
    ("GNU libgomp", "libgomp.txt", re.compile(r"[^/]+\.libs/libgomp[^/]*\.so[.0-9]*")),
    ("LLVM libomp", "libomp.txt", re.compile(r"[^/]+/\.dylibs/libomp[^/]*\.dylib")),
    ("MSVC vcomp", "vcomp.txt", re.compile(r"[^/]+\.libs/vcomp[^/]*\.dll", re.IGNORECASE)),
]
# Where the repair tools put the libraries they vendor (auditwheel and delvewheel: <pkg>.libs/,
# delocate: <pkg>/.dylibs/); delvewheel also writes a load-order file there.
VENDORED = re.compile(r"([^/]+\.libs|[^/]+/\.dylibs)/[^/]+")
NOT_A_LIBRARY = re.compile(r"[^/]+\.libs/\.load[-_]order[^/]*")


def vendored_files(names: list[str]) -> list[str]:
    return [n for n in names if VENDORED.fullmatch(n) and not NOT_A_LIBRARY.fullmatch(n)]


def runtimes_in(names: list[str]) -> list[tuple[str, str, list[str]]]:
    """[(runtime name, license file, files)] for the runtimes vendored in a wheel.

    Raises ValueError for a vendored library that no entry of RUNTIMES covers."""
    found = []
    files = vendored_files(names)
    covered = set()
    for name, license_file, pattern in RUNTIMES:
        matches = [f for f in files if pattern.fullmatch(f)]
        if matches:
            found.append((name, license_file, matches))
            covered.update(matches)
    unknown = sorted(set(files) - covered)
    if unknown:
        raise ValueError(
            f"vendored libraries without a license text in {LICENSE_DIR}: {', '.join(unknown)}; "
            "add the text and an entry to RUNTIMES in tools/bundle_licenses.py"
        )
    return found


def license_member(names: list[str]) -> str:
    """The wheel's main license file: dist-info/licenses/LICENSE (PEP 639), else LICENSE*."""
    for pattern in (r"[^/]+\.dist-info/licenses/LICENSE", r"[^/]+\.dist-info/LICENSE[^/]*"):
        matches = [n for n in names if re.fullmatch(pattern, n)]
        if matches:
            return matches[0]
    raise ValueError("no LICENSE file in the wheel's .dist-info")


def bundled_section(runtimes: list[tuple[str, str, list[str]]]) -> str:
    parts = [
        MARKER,
        "",
        "This binary wheel of csoftmax also contains the following runtime libraries, copied in",
        "unmodified when the wheel was repaired; csoftmax's own license (above) does not apply to",
        "them. Their licenses follow.",
    ]
    for name, license_file, files in runtimes:
        text = (LICENSE_DIR / license_file).read_text(encoding="utf-8").rstrip("\n")
        parts += ["", "-" * 78, f"{name}: {', '.join(files)}", "-" * 78, "", text]
    return "\n".join(parts) + "\n"


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def bundle(wheel: Path) -> str:
    """Rewrite `wheel` in place with the runtime licenses appended; returns a one-line report."""
    with zipfile.ZipFile(wheel) as source:
        names = source.namelist()
        runtimes = runtimes_in(names)
        if not runtimes:
            return f"{wheel.name}: vendors no runtime library, left unchanged"
        member = license_member(names)
        text = source.read(member).decode("utf-8")
        if MARKER in text:  # bundled before: replace that section, so reruns are idempotent
            text = text[: text.index(MARKER)]
        new_text = (text.rstrip("\n") + "\n\n\n" + bundled_section(runtimes)).encode("utf-8")
        if new_text == source.read(member):
            return f"{wheel.name}: licenses already bundled"
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(source.read(record).decode("utf-8"))))
        for row in rows:
            if row and row[0] == member:
                row[1:3] = [record_hash(new_text), str(len(new_text))]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        new_record = out.getvalue().encode("utf-8")

        handle, temporary = tempfile.mkstemp(suffix=".whl", dir=wheel.parent)
        os.close(handle)
        try:
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
                for info in source.infolist():
                    if info.filename == record:
                        continue  # written last, as the wheel spec asks
                    data = new_text if info.filename == member else source.read(info)
                    target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                record_info = source.getinfo(record)
                target.writestr(record_info, new_record, compress_type=zipfile.ZIP_DEFLATED)
        except BaseException:
            os.unlink(temporary)
            raise
    os.chmod(temporary, wheel.stat().st_mode & 0o777)  # mkstemp made it private
    os.replace(temporary, wheel)
    listed = "; ".join(f"{name} ({', '.join(files)})" for name, _, files in runtimes)
    return f"{wheel.name}: appended to {member}: {listed}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if argv else 2
    wheels: list[Path] = []
    for argument in argv:
        path = Path(argument)
        wheels += sorted(path.glob("*.whl")) if path.is_dir() else [path]
    if not wheels:
        print(f"bundle_licenses: no wheel in {' '.join(argv)}", file=sys.stderr)
        return 1
    status = 0
    for wheel in wheels:
        try:
            print(f"bundle_licenses: {bundle(wheel)}")
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            print(f"bundle_licenses: ERROR: {wheel.name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
