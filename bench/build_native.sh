#!/usr/bin/env bash
# Build llama.cpp's own benchmarks, llama-batched-bench and llama-bench, once per machine, from the
# same llama-cpp-python sdist as the installed wheel (so the same llama.cpp version), for
# `make bench` to quote as the native reference. Prints the bin folder on stdout.
#
# Kept beside the wheels: ${LLMEVAL_WHEELS:-~/.cache/llmeval-wheels}/native-VERSION/bin/
# (llama-bench, llama-batched-bench, statically linked). A second call only prints the path.
# CPU build (CUDA=1 adds -DGGML_CUDA=on into native-VERSION-cuda). Not part of `make test`.
set -euo pipefail
VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CUDA=${CUDA:-0}
JOBS=${JOBS:-2}
suffix=""
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TOOLS=ON
            -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF)
if [ "$CUDA" = 1 ]; then suffix="-cuda"; cmake_args+=(-DGGML_CUDA=on); fi
# Without llama.cpp's AMX kernels, as the wheel is built (tools/setup_env.sh says why).
if [ "$(uname -m)" = x86_64 ]; then
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  cmake_args+=("-DCMAKE_C_FLAGS=$noamx" "-DCMAKE_CXX_FLAGS=$noamx"); suffix="$suffix-noamx"
fi
root="${LLMEVAL_WHEELS:-$HOME/.cache/llmeval-wheels}/native-$VERSION$suffix"
bin="$root/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ]; then echo "$bin"; exit 0; fi

python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building llama.cpp's llama-bench and llama-batched-bench ($VERSION$suffix), once per machine" >&2
"$python" -m pip --disable-pip-version-check download -q --no-deps --no-binary :all: -d "$work" \
  "llama-cpp-python==$VERSION" >&2
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
cmake -S "$src" -B "$work/build" -G Ninja "${cmake_args[@]}" >&2
cmake --build "$work/build" -j "$JOBS" --target llama-bench llama-batched-bench >&2
mkdir -p "$root.partial/bin"
cp "$work/build/bin/llama-bench" "$work/build/bin/llama-batched-bench" "$root.partial/bin/"
rm -rf "$root" && mv "$root.partial" "$root"
echo "$bin"
