#!/bin/bash
# The GPU check of the batched llama.cpp backend, in one device run (333 s on an H200, build
# 229 s of it, plus about 2 minutes for the machine to start):
# build llama-cpp-python with CUDA, make a 7B-shaped Q4_K_M model with random weights (same
# speed as real ones), run llama.cpp's own llama-batched-bench for 1/8/32 sequences x 128
# generated tokens, then bench/bench.py --skip-transformers on the same model and settings.
# Logs and bench.json go to $OUT. Needs .gpu/ from `bash ../shared/gpu/prepare.sh 0.3.36`
# (run from the project root, here), carried to the device:
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=600)
set -euxo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
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
echo "all done after $(( $(date +%s) - T0 )) s"
