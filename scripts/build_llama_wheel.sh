#!/usr/bin/env bash
# Build llama-cpp-python once into a wheel cache outside the repository, so that later installs
# on this machine take seconds. PyPI has only its source package, and its default build (native
# CPU flags, AMX kernels) crashed here with an illegal instruction on the first decode: this
# build is portable (AVX2/FMA/F16C, no native tuning). About 10-12 minutes on 2 cores.
#
#   scripts/build_llama_wheel.sh [PYTHON]     prints the wheel's folder (for --find-links)
set -euo pipefail
VERSION="0.3.36"
PYTHON="${1:-python3}"
CACHE="${MODELPORT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelport/wheels}"
mkdir -p "$CACHE"
# The wheel is tagged py3-none-linux_x86_64 (the library is loaded with ctypes).
if ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "$CACHE"
  exit 0
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "Building llama-cpp-python $VERSION (portable CPU build, ~10 minutes on 2 cores; once per machine)..." >&2
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if ! "$WORK/venv/bin/python" -m pip wheel --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -w "$WORK/out" > "$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  echo "llama-cpp-python build failed (log above)." >&2
  exit 1
fi
mv "$WORK"/out/llama_cpp_python-*.whl "$CACHE"/
echo "Built $(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl)" >&2
echo "$CACHE"
