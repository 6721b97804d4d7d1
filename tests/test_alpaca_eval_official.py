"""With AlpacaEval 2.0's official annotator, our win rate is the one `alpaca_eval make_leaderboard`
computes on the same annotations. `make board QUESTIONS=alpaca_eval LIMIT=3
JUDGE=weighted_alpaca_eval_gpt4_turbo` runs alpaca_eval's annotator against a real local
OpenAI-compatible server (`python -m llama_cpp.server` on 127.0.0.1 with the embedded SmolLM2 as
"gpt-4-1106-preview", real logprobs), both orders; then `alpaca_eval make_leaderboard` (its CLI) annotates the same pairs with the same server: each
of its annotations (one order per pair, its own random switch) is one of our two verdicts, and
our win-rate code on exactly its annotations gives its win rate, standard error and counts. The
board also says its published table is comparable (the judge is the one that made it)."""
import csv
import json
import os
import subprocess

import pytest

from conftest import ROOT, SMOLLM2, needs_smollm2, project_registry, slow
KEY = "sk-dummy-official-annotator-key"
pytestmark = [slow, needs_smollm2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from llama_server import llama_cpp_server, server_threads

    tmp = tmp_path_factory.mktemp("server")

    def config(port):
        (tmp / "config.json").write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
            {"model": str(SMOLLM2), "model_alias": "gpt-4-1106-preview", "n_ctx": 8192, "verbose": False,
             **server_threads()}]}))
        return ["--config_file", str(tmp / "config.json")]

    with llama_cpp_server(config, tmp / "server.log", timeout=300) as url:
        yield url


def test_win_rate_equals_alpaca_evals_make_leaderboard(bench_data_url, server, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(OPENAI_BASE_URL=server, OPENAI_API_KEY=KEY)
    # The project's registry, answers cut to 16 tokens (the annotator reads them the same way).
    result = subprocess.run(["make", "--no-print-directory", "board", f"OUT={out}", "MODELS=smollm2_135m",
                             f"MODELS_TOML={project_registry(tmp_path)}", "QUESTIONS=alpaca_eval", "LIMIT=3",
                             "JUDGE=weighted_alpaca_eval_gpt4_turbo"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with (out / "board.csv").open(encoding="utf-8") as f:
        ours = {row["model"]: row for row in csv.DictReader(f)}["smollm2_135m"]
    # A tiny stand-in for GPT-4 may reply without m/M: such a call is counted, never a crash, and its
    # pair is left out (the official judge's replies always parse).
    failed = int(float(ours["n_failed"]))
    assert int(float(ours["n_total"])) + failed == 3 and failed <= 1
    assert "(it is: this board used it)" in (out / "board.md").read_text(encoding="utf-8")

    # alpaca_eval's own leaderboard with the same annotator and server: one order per pair, its own
    # random switch. Each of its annotations is one of our two verdicts (we judged both orders).
    work = tmp_path / "alpaca_eval"
    work.mkdir()
    leaderboard = work / "leaderboard.csv"
    cli = ROOT / ".venv" / "bin" / "alpaca_eval"
    done = subprocess.run([str(cli), "make_leaderboard", "--leaderboard_path", str(leaderboard),
                           "--annotators_config", "weighted_alpaca_eval_gpt4_turbo", "--caching_path", "None",
                           "--all_model_outputs", str(out / "output.json"), "--reference_outputs", str(out / "reference.json"),
                           "--fn_metric", "get_winrate", "--sort_by", "win_rate"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert leaderboard.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    with leaderboard.open(encoding="utf-8") as f:
        theirs = {row[""]: row for row in csv.DictReader(f)}["smollm2_135m"]
    annotations = json.loads((work / "results" / "smollm2_135m" / "weighted_alpaca_eval_gpt4_turbo" /
                              "annotations.json").read_text(encoding="utf-8"))
    pairs = {p["instruction"]: p for p in json.loads((out / "board_pairs.json").read_text(encoding="utf-8"))}
    same = []
    for a in annotations:  # preference: 1 = output_1 (the reference) better, 2 = the model's
        if a.get("preference") is None or a["preference"] != a["preference"]:  # unparsed there too
            continue
        pair = pairs[a["instruction"] + (f"\n\n{a['input']}" if a.get("input") else "")]
        ours_both = [3 - pair["pref_model_first"] if pair["pref_model_first"] is not None else None,
                     pair["pref_reference_first"]]
        match = min((v for v in ours_both if v is not None), key=lambda v: abs(v - a["preference"]))
        assert match == pytest.approx(a["preference"], abs=1e-4)  # the same annotation as one of ours
        same.append(match)
    import pandas as pd

    from board.pairwise.stats import win_rate_stats

    recomputed = win_rate_stats(pd.Series(same))  # our win rate, on exactly its annotations
    for column in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate"):
        assert float(recomputed[column]) == pytest.approx(float(theirs[column]), abs=1e-6), column
    # and the board's own (both orders) is alpaca_eval's metric on our combined annotations
    both = win_rate_stats(pd.Series([p["preference"] for p in pairs.values() if p["preference"] is not None]))
    assert float(ours["win_rate"]) == pytest.approx(both["win_rate"], abs=1e-9)
