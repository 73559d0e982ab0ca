#!/usr/bin/env bash
# cibuildwheel before-all on macOS: build LLVM's OpenMP runtime (libomp) for every macOS arch
# being built, each for the wheel's MACOSX_DEPLOYMENT_TARGET, so that csoftmax's macOS wheels are
# multithreaded like the Linux and Windows ones.
#
# Why build it: Apple clang has no OpenMP runtime, and Homebrew's libomp is built for the
# runner's own macOS version, which delocate (rightly) refuses to vendor into a wheel that
# claims to run on older macOS. Building the release sources with CMAKE_OSX_DEPLOYMENT_TARGET
# set gives a dylib whose minimum macOS equals the wheel's. delocate then copies it into the
# wheel as csoftmax/.dylibs/libomp.dylib, and tools/bundle_licenses.py adds its license.
#
# The deployment targets below must match MACOSX_DEPLOYMENT_TARGET in pyproject.toml's
# [[tool.cibuildwheel.overrides]] (a libomp newer than the wheel fails delocate loudly).
#
# Installs into ~/.cache/csoftmax-libomp/<arch>, the path pyproject.toml's overrides point the
# build at (and the workflow caches); an existing build of the same version and target is reused.
set -euo pipefail

LLVM_VERSION=21.1.1
OPENMP_SHA256=eb10379045844c2d2f1b89a15fd1beaf9cd0de524180c6648e9ea17a0661ece2
CMAKE_SHA256=9c0b9064b7d0f2a3004f1d034aadf84d2af4e5dca2135ebf697b0a1eb85ef769
RELEASES=https://github.com/llvm/llvm-project/releases/download/llvmorg-$LLVM_VERSION
ROOT=$HOME/.cache/csoftmax-libomp  # pyproject.toml's macOS overrides point here

deployment_target() {
    case $1 in
        x86_64) echo 10.15 ;;  # CPython 3.14's own floor, used for every x86-64 wheel
        arm64) echo 11.0 ;;    # the first macOS on Apple silicon
        *) echo "cibw_macos_libomp.sh: unsupported arch $1" >&2; return 1 ;;
    esac
}

# The archs cibuildwheel will build: CIBW_ARCHS_MACOS / CIBW_ARCHS as set by the workflow,
# else both (a local `cibuildwheel --platform macos` builds both with pyproject's archs).
requested=${CIBW_ARCHS_MACOS:-${CIBW_ARCHS:-x86_64 arm64}}
archs=()
for arch in ${requested//,/ }; do
    case $arch in
        native | auto | auto64) archs+=("$(uname -m)") ;;
        universal2 | all) archs+=(x86_64 arm64) ;;
        *) archs+=("$arch") ;;
    esac
done

fetch() {  # fetch URL SHA256 DEST
    curl --fail --location --retry 5 --silent --show-error --output "$3" "$1"
    echo "$2  $3" | shasum -a 256 -c -
}

SRC=""
prepare_sources() {
    [ -n "$SRC" ] && return 0
    SRC=$(mktemp -d -t csoftmax-libomp)
    fetch "$RELEASES/openmp-$LLVM_VERSION.src.tar.xz" "$OPENMP_SHA256" "$SRC/openmp.tar.xz"
    fetch "$RELEASES/cmake-$LLVM_VERSION.src.tar.xz" "$CMAKE_SHA256" "$SRC/cmake.tar.xz"
    # openmp's CMakeLists.txt looks for LLVM's shared CMake modules in ../cmake.
    mkdir -p "$SRC/openmp" "$SRC/cmake"
    tar -xf "$SRC/openmp.tar.xz" --strip-components 1 -C "$SRC/openmp"
    tar -xf "$SRC/cmake.tar.xz" --strip-components 1 -C "$SRC/cmake"
}

command -v cmake >/dev/null || python3 -m pip install --quiet cmake

for arch in $(printf '%s\n' "${archs[@]}" | sort -u); do
    target=$(deployment_target "$arch")
    prefix=$ROOT/$arch
    stamp="libomp $LLVM_VERSION $arch macOS $target"
    if [ -f "$prefix/lib/libomp.dylib" ] && [ "$(cat "$prefix/STAMP" 2>/dev/null)" = "$stamp" ]; then
        echo "cibw_macos_libomp.sh: reusing $stamp in $prefix"
        continue
    fi
    prepare_sources
    echo "cibw_macos_libomp.sh: building $stamp into $prefix"
    rm -rf "$prefix" "$SRC/build-$arch"
    # Shared library only, no aliases (libgomp/libiomp5 names would shadow other runtimes),
    # no tests (they need LLVM's lit), no Fortran module, no offloading.
    cmake -S "$SRC/openmp" -B "$SRC/build-$arch" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$prefix" \
        -DCMAKE_INSTALL_NAME_DIR="$prefix/lib" \
        -DCMAKE_OSX_ARCHITECTURES="$arch" \
        -DCMAKE_OSX_DEPLOYMENT_TARGET="$target" \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DLIBOMP_INSTALL_ALIASES=OFF \
        -DLIBOMP_ENABLE_SHARED=ON \
        -DLIBOMP_FORTRAN_MODULES=OFF \
        -DOPENMP_ENABLE_LIBOMPTARGET=OFF \
        -DOPENMP_ENABLE_OMPT_TOOLS=OFF \
        -DOPENMP_STANDALONE_BUILD=ON \
        -Wno-dev
    cmake --build "$SRC/build-$arch" --parallel "$(sysctl -n hw.ncpu)"
    cmake --install "$SRC/build-$arch"
    cp "$SRC/openmp/LICENSE.TXT" "$prefix/LICENSE.TXT"
    echo "$stamp" >"$prefix/STAMP"
done

for arch in $(printf '%s\n' "${archs[@]}" | sort -u); do
    dylib=$ROOT/$arch/lib/libomp.dylib
    echo "cibw_macos_libomp.sh: $dylib"
    lipo -info "$dylib"
    # The minimum macOS recorded in the dylib (LC_BUILD_VERSION minos) must not exceed the
    # wheel's deployment target, or delocate refuses it.
    otool -l "$dylib" | grep -A4 -E 'LC_BUILD_VERSION|LC_VERSION_MIN_MACOSX' | grep -E 'minos|version' || true
    otool -D "$dylib"
done
[ -z "$SRC" ] || rm -rf "$SRC"
