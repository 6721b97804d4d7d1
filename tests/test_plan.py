"""`make plan` (tools/plan.py): sizes of the embedded models read from their GGUFs, the declared
real models from their published shapes, on this machine (no GPU) and on pretended cards."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import plan
from backends import gpu_fit

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
pytestmark = pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")


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
    assert table["chatglm_6b"][0] == "transformers backend, not sized here"
    assert table["gemma3_270m"][0].endswith("GiB")  # read from its GGUF, not published


def test_plan_with_a_given_free_memory_says_what_does_not_fit(capsys):
    assert plan.main(["qwen3_14b", "--free", "6GiB", "--models-toml", str(ROOT / "models.toml")]) == 0
    out = capsys.readouterr().out
    assert "GPU memory free: 6.0 GiB (given with --free)" in out
    assert re.search(r"note: qwen3_14b: \d+ of 40 layers fit on the GPU \(6\.0 GiB free", out)


@pytest.mark.parametrize("args, message", [
    (["--free", "lots"], "error: --free wants a size like 12GiB or 800MiB, got 'lots'"),
    (["--cards", "10"], "error: --cards wants sizes among [8, 12, 16, 24] (GB), got '10'"),
    (["no_such_model"], "error: models.toml: no model named 'no_such_model'"),
])
def test_bad_input_is_one_line(args, message):
    out = subprocess.run([sys.executable, "tools/plan.py", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and out.stderr.startswith(message) and len(out.stderr.splitlines()) == 1
