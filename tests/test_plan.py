"""`make plan` (tools/plan.py): sizes of the embedded models read from their GGUFs, the declared
real models from their published shapes, on this machine (no GPU) and on pretended cards."""
import json
import re
import subprocess
import sys

import pytest

import plan
import twins
from backends import gpu_fit, hf_fit

from conftest import ROOT, SMOLLM2, needs_smollm2
pytestmark = needs_smollm2


def rows(out: str) -> dict[str, list[str]]:
    """The Markdown table's rows by model name."""
    table = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("model",) and not set(cells[0]) <= {"-"}:
            table[cells[0]] = cells[1:]
    return table


def test_make_plan_on_this_machine_prints_the_embedded_models_and_the_judge():
    # Through make, as a user runs it: the defaults of models.toml, the judge marked.
    out = subprocess.run(["make", "-s", "plan"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    table = rows(out.stdout)
    assert set(table) == {"smollm2_135m (judge)", "gemma3_270m", "smollm2_135m_sampled"}
    shape = gpu_fit.ModelShape.from_gguf(SMOLLM2)
    weights, kv, where = table["smollm2_135m (judge)"]
    assert weights == f"{SMOLLM2.stat().st_size / 2**30:.2f} GiB"
    # 30 layers x 3 KV heads x 64 x 2 (K, V) x 2 bytes x 4096 tokens = 90 MiB.
    assert shape.kv_bytes_per_token() == 30 * 3 * 64 * 2 * 2
    assert kv == "90 MiB (4096)"
    import llama_cpp
    if not llama_cpp.llama_supports_gpu_offload():
        assert "no GPU" in out.stdout and re.fullmatch(r"CPU, N=\d+", where)


def test_plan_on_pretended_cards_for_the_declared_real_models(capsys):
    names = ["qwen25_7b", "llama31_8b", "qwen3_14b", "baichuan_7b", "chatglm_6b", "gemma3_270m"]
    assert plan.main(names + ["--judge", "qwen25_7b", "--cards", "8,12,16,24",
                              "--models-toml", str(ROOT / "models.toml")]) == 0
    table = rows(capsys.readouterr().out)
    assert table["qwen25_7b (judge)"][:2] == ["4.36 GiB (published)", "224 MiB (4096)"]
    # The same numbers as the sizing function on those cards.
    for name, key in (("qwen3_14b", "Qwen3-14B-Q4_K_M.gguf"), ("llama31_8b", "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf")):
        shape = gpu_fit.ModelShape.from_published(name, **gpu_fit.PUBLISHED[key])
        for col, gb in enumerate((8, 12, 16, 24)):
            f = gpu_fit.fit(shape, (plan.CARDS_MIB[gb] - plan.DESKTOP_MIB) << 20, 4096)
            layers = f"{f.gpu_layers}/{shape.n_layer}" + ("" if f.n_gpu_layers == -1 else " (rest CPU)")
            assert table[name][2 + col] == f"{layers}, N={f.n_parallel}"
    assert table["qwen3_14b"][2].endswith("(rest CPU), N=1")  # 9 GB on an 8 GB card
    # The transformers model, from THUDM/chatglm-6b's published config: 6.17 billion weights in fp16.
    shape = hf_fit.HFShape.from_config(hf_fit.PUBLISHED["THUDM/chatglm-6b"])
    assert shape.params == 6_173_286_400
    assert table["chatglm_6b"][:2] == ["11.50 GiB fp16 (published)", "896 MiB (2048)"]
    assert table["chatglm_6b"][2:] == ["does not fit", "does not fit", "all, N=1", "all, N=4"]
    assert table["gemma3_270m"][0].endswith("GiB")  # read from its GGUF, not published


def test_plan_with_a_given_free_memory_says_what_does_not_fit(capsys):
    assert plan.main(["qwen3_14b", "--free", "6GiB", "--models-toml", str(ROOT / "models.toml")]) == 0
    out = capsys.readouterr().out
    assert "GPU memory free: 6.0 GiB (given with --free)" in out
    assert re.search(r"note: qwen3_14b: \d+ of 40 layers fit on the GPU \(6\.0 GiB free", out)


def test_chatglm_card_rows_by_quant(capsys):
    """docs/gpu.md's card table: fp16, int8 and int4 rows, N from the same sizing function."""
    assert plan.main(["chatglm_6b", "--cards", "8,12,16,24", "--quant", "fp16,int8,int4",
                      "--models-toml", str(ROOT / "models.toml")]) == 0
    table = rows(capsys.readouterr().out)
    shape = hf_fit.HFShape.from_config(hf_fit.PUBLISHED["THUDM/chatglm-6b"])
    for quant, weights in (("fp16", "11.50"), ("int8", "6.25"), ("int4", "3.63")):
        row = table[f"chatglm_6b ({quant})"]
        assert row[0] == f"{weights} GiB {quant} (published)"
        for col, gb in enumerate((8, 12, 16, 24)):
            n = hf_fit.fit_n(shape, (plan.CARDS_MIB[gb] - plan.DESKTOP_MIB) << 20, 2048,
                             quant=None if quant == "fp16" else quant)
            assert row[2 + col] == (f"all, N={n}" if n else "does not fit")
    assert table["chatglm_6b (int4)"][2] == "all, N=1"  # int4 fits an 8 GB card, fp16 needs 16 GB
    # Where it does not fit, the note says what would.
    assert plan.main(["chatglm_6b", "--free", "10GiB", "--models-toml", str(ROOT / "models.toml")]) == 0
    assert ('note: chatglm_6b: weights 11.5 GiB + one sequence of 2048 tokens (2.4 GiB) do not fit in 10.0 GiB '
            'free; set quant = "int8"') in capsys.readouterr().out


@pytest.mark.skipif(not twins.twin_available(), reason="../shared/twins/chatglm-6b is not beside the clone")
def test_transformers_sizes_match_the_twins_config_and_loaded_weights(tmp_path, tiny_llama, chatglm_venv, capsys):
    """The published chatglm-6b shape is the real config.json; on the twin (its real code, in its own
    environment) and on a tiny Llama, the sized weights and KV cache are what a loaded model holds."""
    real = json.loads((twins.CHATGLM_SOURCE / "config.json").read_text(encoding="utf-8"))
    assert all(real[k] == v for k, v in hf_fit.PUBLISHED["THUDM/chatglm-6b"].items())
    glm = twins.build_chatglm(tmp_path / "glm")
    probe = subprocess.run([str(chatglm_venv / "bin" / "python"), "-c", GLM_PROBE, str(glm)],
                           capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    shape = hf_fit.HFShape.from_folder(glm, "glm")
    assert shape.source == "index" and shape.family == "chatglm"
    # From the index: the saved bytes less the output matrix saved twice (ChatGLM ties it).
    assert abs(shape.weight_bytes(4) - measured["weight_bytes"]) <= 0.001 * measured["weight_bytes"]
    assert shape.kv_bytes_per_token(4) * measured["tokens"] == measured["kv_bytes"]
    assert hf_fit.HFShape.from_config(json.loads((glm / "config.json").read_text()), "glm").params * 4 \
        == measured["weight_bytes"]

    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    with torch.no_grad():
        cache = model(torch.tensor([[1, 5, 9, 11, 20]]), use_cache=True).past_key_values
    kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    shape = hf_fit.HFShape.from_folder(tiny_llama)
    assert shape.kv_bytes_per_token(4) * 5 == kv
    assert shape.weight_bytes(4) == sum(p.numel() * p.element_size() for p in model.parameters())

    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.glm]\npath = "{glm}"\nbackend = "transformers"\nn_ctx = 2048\n', encoding="utf-8")
    assert plan.main(["glm", "--free", "1GiB", "--models-toml", str(toml)]) == 0
    row = rows(capsys.readouterr().out)["glm"]
    assert row[:2] == [f"{shape_glm_gib(glm)} GiB fp16", f"{2 * 2 * 64 * 2 * 2048 / 2**20:.0f} MiB (2048)"]


def shape_glm_gib(folder) -> str:
    return f"{hf_fit.HFShape.from_folder(folder).weight_bytes(2) / 2**30:.2f}"


GLM_PROBE = """
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True, torch_dtype=torch.float32).float().eval()
weights = sum(p.numel() * p.element_size() for p in model.parameters())  # tied: counted once
ids = tok(["What is the capital of France?"], return_tensors="pt")
with torch.no_grad():
    cache = model(**ids, use_cache=True).past_key_values
kv = sum(t.numel() * t.element_size() for layer in cache for t in layer)
print(json.dumps({"weight_bytes": weights, "kv_bytes": kv, "tokens": ids["input_ids"].shape[1]}))
"""


@pytest.mark.parametrize("args, message", [
    (["--free", "lots"], "error: --free wants a size like 12GiB or 800MiB, got 'lots'"),
    (["--cards", "10"], "error: --cards wants sizes among [8, 12, 16, 24] (GB), got '10'"),
    (["no_such_model"], "error: models.toml: no model named 'no_such_model'"),
])
def test_bad_input_is_one_line(args, message):
    out = subprocess.run([sys.executable, "tools/plan.py", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and out.stderr.startswith(message) and len(out.stderr.splitlines()) == 1
