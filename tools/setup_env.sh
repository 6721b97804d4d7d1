#!/usr/bin/env bash
# Create the virtual environment with the pinned packages.
# llama-cpp-python has no binary wheel on PyPI: it is compiled once per variant (cpu, cuda) into
# a wheel kept in ~/.cache/llmeval-wheels, so a second setup (or a fresh .venv) reuses it.
set -euo pipefail
VENV=${VENV:-.venv}
CUDA=${CUDA:-0}
LLAMA_CPP_VERSION=0.3.36

variant=cpu
cmake_args="-DLLAVA_BUILD=off"
if [ "$CUDA" = 1 ]; then
  variant=cuda
  cmake_args="$cmake_args -DGGML_CUDA=on"
fi
# llama.cpp 0.3.36's AMX kernels (picked by -march=native on Sapphire Rapids and later) crash the
# process (SIGSEGV in ggml_backend_amx_mul_mat) on batched decodes: built without them on x86-64,
# where explicit -mno-* flags win over -march=native. The wheel folder says so, so an older wheel
# built with AMX is not reused.
if [ "$(uname -m)" = x86_64 ]; then
  export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # CMake's initial C/C++ flags
  export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  variant="$variant-noamx"
fi
wheels="${LLMEVAL_WHEELS:-$HOME/.cache/llmeval-wheels}/$variant"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip wheel

if ! ls "$wheels"/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl >/dev/null 2>&1; then
  echo "Compiling llama-cpp-python $LLAMA_CPP_VERSION ($variant); takes minutes, done once per machine."
  mkdir -p "$wheels"
  # --no-cache-dir: pip's own wheel cache does not know CPU from CUDA builds.
  CMAKE_ARGS="$cmake_args" "${pip[@]}" wheel -q --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
fi
"${pip[@]}" install -q --force-reinstall --no-deps "$wheels"/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl
# The server extra and llama-cpp-python's own needs, then everything else, all pinned.
"${pip[@]}" install -q "llama-cpp-python[server]==$LLAMA_CPP_VERSION" -r requirements.txt
# Packages whose own dependencies are not wanted (FastChat: only its llm_judge scripts, for tests).
"${pip[@]}" install -q --no-deps -r requirements-nodeps.txt
# llama.cpp's convert_hf_to_gguf.py (for make quantize), from the same llama-cpp-python sdist on
# PyPI, kept beside the wheels; done once, and quantize.py fetches it itself if it is missing.
"$VENV/bin/python" tools/quantize.py --fetch-converter >/dev/null || echo "note: llama.cpp's converter not fetched; make quantize will retry"
echo "setup done ($variant): $VENV"
