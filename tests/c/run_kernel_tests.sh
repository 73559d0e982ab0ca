#!/usr/bin/env bash
# Builds and runs the C-level kernel test (tests/c/test_kernels.c) without Python:
#
#   native    this machine's compiler; every ISA this CPU runs is required
#             (x86-64: scalar, avx2, and avx512 where the CPU has it; aarch64: scalar, neon).
#   aarch64   on an x86-64 host: cross-compiled with aarch64-linux-gnu-gcc and run under
#             qemu-user, which proves the NEON kernel (scalar and neon required).
#   all       both (the default).
#
# Each build first compiles every C source with the wheel's optimisation level (-O3) and
# -Wall -Wextra -Werror, so a warning in any ISA's instantiation (AVX-512 included, which
# cannot run on every machine) fails here.  Missing Debian packages (gcc-aarch64-linux-gnu,
# qemu-user) are installed with apt-get.  Exits non-zero on any failure.
#
# Usage: tests/c/run_kernel_tests.sh [native|aarch64|all]
# Environment: CC (native compiler, default cc); CSOFTMAX_C_TEST_BUILD=dir keeps the binaries
# there (default: a temporary directory, removed on exit; nothing is written to the tree).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=${1:-all}
case "$MODE" in
native | aarch64 | all) ;;
*)
    echo "usage: $0 [native|aarch64|all]" >&2
    exit 2
    ;;
esac

if [[ -n "${CSOFTMAX_C_TEST_BUILD:-}" ]]; then
    BUILD=$CSOFTMAX_C_TEST_BUILD
    mkdir -p "$BUILD"
else
    BUILD=$(mktemp -d -t csoftmax-c-tests.XXXXXX)
fi
START=$SECONDS

# Build errors stop at once (set -e); a failing test run is counted and the next mode still
# runs.  The verdict is printed once at the end, whatever happened.
TEST_RUNS_FAILED=0
finish() {
    local status=$?
    [[ -n "${CSOFTMAX_C_TEST_BUILD:-}" ]] || rm -rf "$BUILD"
    printf '\nC kernel tests (%s): %s after %d s\n' "$MODE" "$([[ $status -eq 0 ]] && echo passed || echo FAILED)" \
        $((SECONDS - START))
    exit $status
}
trap finish EXIT

# The flags of setup.py (no host-tuned -march; no FMA contraction), -O2 for the test itself.
COMMON_FLAGS=(-ffp-contract=off -fno-math-errno -std=gnu11 -fopenmp -Wall -Wextra -Werror -Isrc_c -Itests/c)
LIBRARY_SOURCES=(src_c/*.c src_c/kernels/*.c)
TEST_SOURCES=(tests/c/reference.c tests/c/test_kernels.c)

step() { printf '\n== %s\n' "$*"; }

# Installs Debian packages when a command is missing (CI machines start fresh).
install_packages() {
    local runner=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            runner=(sudo -n)
        else
            echo "need root (or sudo) to install: $*" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "no apt-get here: install $* by hand" >&2
        return 1
    fi
    step "installing $*"
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# Compiles every library source with the wheel's -O3: warnings only show up at some levels.
warnings_check() {
    local compiler=$1 label=$2
    step "$label: -O3 -Wall -Wextra -Werror over every C source ($compiler)"
    mkdir -p "$BUILD/objects-$label"
    for source in "${LIBRARY_SOURCES[@]}"; do
        "$compiler" -O3 "${COMMON_FLAGS[@]}" -c "$source" -o "$BUILD/objects-$label/$(basename "$source" .c).o"
    done
    echo "clean"
}

run_native() {
    local compiler=${CC:-cc} isas=()
    case "$(uname -m)" in
    x86_64 | amd64)
        isas=(scalar avx2)
        if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
            isas+=(avx512)
        fi
        ;;
    aarch64 | arm64) isas=(scalar neon) ;;
    esac
    warnings_check "$compiler" native
    step "native: build and run (${isas[*]:-every usable ISA})"
    "$compiler" -O2 "${COMMON_FLAGS[@]}" "${LIBRARY_SOURCES[@]}" "${TEST_SOURCES[@]}" -lm -o "$BUILD/test_kernels"
    "$BUILD/test_kernels" "${isas[@]}" || TEST_RUNS_FAILED=$((TEST_RUNS_FAILED + 1))
}

run_aarch64() {
    case "$(uname -m)" in
    aarch64 | arm64)
        echo "aarch64 host: the native run already tests the NEON kernel"
        return 0
        ;;
    esac
    local packages=()
    command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    command -v qemu-aarch64 >/dev/null 2>&1 || command -v qemu-aarch64-static >/dev/null 2>&1 ||
        packages+=(qemu-user)
    if ((${#packages[@]})); then
        install_packages "${packages[@]}"
    fi
    local qemu
    qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
    warnings_check aarch64-linux-gnu-gcc aarch64
    step "aarch64: cross-build, run under $(basename "$qemu") (scalar neon)"
    aarch64-linux-gnu-gcc -O2 "${COMMON_FLAGS[@]}" "${LIBRARY_SOURCES[@]}" "${TEST_SOURCES[@]}" -lm \
        -o "$BUILD/test_kernels_aarch64"
    # -L: the aarch64 glibc and libgomp of the cross toolchain (dynamic linking, as in a wheel)
    "$qemu" -L /usr/aarch64-linux-gnu "$BUILD/test_kernels_aarch64" scalar neon ||
        TEST_RUNS_FAILED=$((TEST_RUNS_FAILED + 1))
}

if [[ $MODE == native || $MODE == all ]]; then
    run_native
fi
if [[ $MODE == aarch64 || $MODE == all ]]; then
    run_aarch64
fi
((TEST_RUNS_FAILED == 0))
