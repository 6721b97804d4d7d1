#!/bin/bash
# GPU checks, one device run each: `bash bench/gpu_check.sh` (llama.cpp, below) or
# `bash bench/gpu_check.sh transformers` (the transformers backend's batches on ChatGLM-6B's shape).
#
# transformers: THUDM/chatglm-6b's own code (the twin's copy) with the real 6B config and random
# fp16 weights (same speed as real ones), in its pinned transformers 4.27: bench/bench_hf.py, the
# guide's loop (one question per generate) against ours with N = 16, in fp16 and in int4 (the
# model's own quantize(4), cpm_kernels). The issue asks >= 8x at N = 16. Prepared, never run:
# no GPU was lent to the session that wrote it (expect about 6 minutes). Wheels first, here:
#   bash bench/gpu_check.sh prepare      (pip download into .gpu/hf-wheels, for the device's Python 3.12)
#   run(command="bash bench/gpu_check.sh transformers", carry=[".gpu"], timeout_s=600)
# It needs the twin's files (shared/twins/chatglm-6b) beside or inside the tree on the device.
#
# llama.cpp: the GPU check of the batched llama.cpp backend (333 s on an H200, build
# 229 s of it, plus about 2 minutes for the machine to start):
# build llama-cpp-python with CUDA, make a 7B-shaped Q4_K_M model with random weights (same
# speed as real ones), run llama.cpp's own llama-batched-bench for 1/8/32 sequences x 128
# generated tokens, then bench/bench.py --skip-transformers on the same model and settings.
# Logs and bench.json go to $OUT. Needs .gpu/ from `bash ../shared/gpu/prepare.sh 0.3.36`
# (run from the project root, here), carried to the device:
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# Then, when .gpu/sets/ holds the sets (`bash bench/gpu_check.sh prepare-labels` here, once), the
# labelled rows of make bench-judge on the same 7B-shaped model: MT-Bench single grading (LIMIT 16
# questions x 2 answers written by the model itself) and Arena-Hard v0.1 games (16 prompts x 2
# orders), explanations up to 128 tokens, one decode vs two-pass vs llama.cpp's own tools. Its
# random weights write to the cap, so the figures are an upper bound on the time. Prepared, never
# run: no GPU was lent to the session that wrote it.
set -euxo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"

if [ "${1:-}" = prepare ]; then  # here, not on the device: ChatGLM-6B's pins as Python 3.12 wheels
    # tokenizers 0.13.3 has no Python 3.12 wheel: the device's own tokenizers stays (ChatGLM's
    # tokenizer is the slow, SentencePiece one; transformers 4.27 only checks the version).
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d .gpu/hf-wheels transformers==4.27.1 huggingface-hub==0.25.2 sentencepiece==0.2.3 cpm_kernels==1.0.11
    exit 0
fi
if [ "${1:-}" = prepare-labels ]; then  # here: the sets' files (make data's fetch) into .gpu/
    for s in mt_bench arena_hard; do
        LLMEVAL_DATA_DIR=.gpu/data ${PYTHON:-.venv/bin/python} tools/data.py $s --limit 16 --out .gpu
    done
    # the device sees the tree at another path: the sidecars name the files relative to it
    sed -i "s#$PWD/##g" .gpu/sets/*.set.json
    exit 0
fi
if [ "${1:-}" = transformers ]; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hf-site \
        .gpu/hf-wheels/*.whl
    # transformers 4.27 refuses tokenizers >= 0.14 at import; its slow tokenizers need none.
    sed -i 's/"tokenizers>=0.11.1,!=0.11.3,<0.14"/"tokenizers>=0.11.1"/' /tmp/hf-site/transformers/dependency_versions_table.py
    for d in "$PWD/shared" "$PWD/../shared"; do if [ -d "$d/twins/chatglm-6b" ]; then export LLMEVAL_SHARED="$d"; fi; done
    export PYTHONPATH=/tmp/hf-site:$PWD/tools
    python3 bench/bench_hf.py --chatglm-shape 6b --quant fp16,int4 --questions 16 --max-tokens 64 \
        --parallel 16 --out "$OUT" 2>&1 | tee "$OUT/bench_hf.log"
    exit 0
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
T0=$(date +%s)

# The synthetic model's generator needs only gguf-py and a vocab: start it beside the build.
mkdir -p /tmp/synth
tar xzf .gpu/llcpp.tgz -C /tmp/synth llcpp/vendor/llama.cpp/gguf-py llcpp/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf
V=/tmp/synth/llcpp/vendor/llama.cpp
python3 .gpu/synth_gguf.py $V/gguf-py $V/models/ggml-vocab-llama-spm.gguf /tmp/m-f16.gguf --shape 7b \
    > "$OUT/model.log" 2>&1 &
SYNTH=$!

bash .gpu/device_build.sh > "$OUT/build.log" 2>&1
echo "build done after $(( $(date +%s) - T0 )) s"
wait $SYNTH
/tmp/skb/bin/llama-quantize /tmp/m-f16.gguf /tmp/m-q4km.gguf Q4_K_M 16 >> "$OUT/model.log" 2>&1
rm -f /tmp/m-f16.gguf
echo "model ready after $(( $(date +%s) - T0 )) s"

# llama.cpp's own batched speed: 32 sequences x (32 prompt + 128 generated) tokens = 256 cells
# each, the per-sequence context our backend picks for these prompts.
/tmp/skb/bin/llama-batched-bench -m /tmp/m-q4km.gguf -c 8192 -b 2048 -ub 512 -ngl 99 \
    -npp 32 -ntg 128 -npl 1,8,32 --output-format jsonl \
    > "$OUT/batched_bench.jsonl" 2> "$OUT/batched_bench.log"
cat "$OUT/batched_bench.jsonl"

export PYTHONPATH=/tmp/site:$PWD/tools
python3 bench/bench.py --model /tmp/m-q4km.gguf --skip-transformers --parallel 1,8,32 \
    --llama-batched-bench "$OUT/batched_bench.jsonl" --out "$OUT" 2>&1 | tee "$OUT/bench.log"
if [ -f .gpu/sets/mt_bench-limit16.jsonl ]; then
    TEMPLATE=$'{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:'
    python3 -c 'import json, sys; print(f"[models.synth]\npath = \"/tmp/m-q4km.gguf\"\nn_ctx = 4096\nchat_template = {json.dumps(sys.argv[1])}")' \
        "$TEMPLATE" > /tmp/gpu_models.toml
    python3 bench/bench_labels.py --judge-model /tmp/m-q4km.gguf --chat-template "$TEMPLATE" \
        --models-toml /tmp/gpu_models.toml --answer-models synth --answer-tokens 128 --max-tokens 128 \
        --mt-bench .gpu/sets/mt_bench-limit16.jsonl --arena-hard .gpu/sets/arena_hard-limit16.jsonl \
        --native-bin /tmp/skb/bin --machine "one H200 (device run)" --out "$OUT" 2>&1 | tee "$OUT/bench_labels.log"
fi
echo "all done after $(( $(date +%s) - T0 )) s"
