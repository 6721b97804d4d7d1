"""make judge-check: the pairs file, and a real check with the embedded judge (two pairs, both
orders) that the board's manifest then quotes."""
import json
from pathlib import Path

import pytest

from judge_check import DEFAULT_PAIRS, check_path, load_check_pairs, main
from lib.records import InputError

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_pairs_file_has_plain_cases_in_english_and_chinese():
    pairs = load_check_pairs(DEFAULT_PAIRS)
    assert 10 <= len(pairs) <= 14
    assert {p["lang"] for p in pairs} == {"en", "zh"}
    assert {"wrong", "empty", "degenerate"} <= {p["wrong_is"] for p in pairs}


def test_bad_pairs_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"instruction": "q", "right": "a"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="needs text fields"):
        load_check_pairs(bad)
    bad.write_text("not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"pairs.jsonl:1: not valid JSON"):
        load_check_pairs(bad)


@pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")
def test_check_reports_accuracy_and_consistency_and_the_board_quotes_it(tmp_path, capsys):
    from board.pairwise.board import last_check
    from judges.resolve import resolve_judge
    from lib.registry import load_registry

    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nn_ctx = 2048\n', encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--judge", "tiny", "--models-toml", str(tmp_path / "models.toml"), "--out", str(out),
                 "--limit", "2"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy:" in printed and "consistency:" in printed and "by order:" in printed
    check = json.loads(check_path(out, "tiny").read_text(encoding="utf-8"))
    assert check["n_pairs"] == 2 and check["n_failed"] == 0 and check["calls"]["made"] == 4
    for key in ("accuracy", "accuracy_right_first", "accuracy_right_second", "consistency"):
        assert 0 <= check[key] <= 100
    judge = resolve_judge("tiny", load_registry(tmp_path / "models.toml"), out)
    quoted = last_check(out, judge)
    assert quoted["current"] and quoted["accuracy"] == check["accuracy"]


def test_unknown_judge_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\n', encoding="utf-8")
    assert main(["--judge", "nope", "--models-toml", str(tmp_path / "models.toml"), "--out", str(tmp_path)]) == 2
    assert "judge 'nope' is neither a model" in capsys.readouterr().err


def test_accuracy_interval_is_a_percentile_bootstrap_over_pairs():
    from judge_check import accuracy_interval

    low, high = accuracy_interval([0.9] * 15 + [0.1] * 5)  # 75% right
    assert 50 < low < 75 < high < 95
    assert accuracy_interval([0.9, 0.8]) == (100.0, 100.0)
    assert accuracy_interval([0.5]) == (None, None)  # one pair: no interval


@pytest.mark.skipif(not SMOLLM2.is_file(), reason="run `make models` first")
def test_own_labels_and_several_judges_side_by_side(tmp_path, capsys):
    import shutil

    other = tmp_path / "other.gguf"
    shutil.copyfile(SMOLLM2, other)
    with other.open("ab") as f:
        f.write(b"another judge")
    (tmp_path / "models.toml").write_text(f'[models.tiny]\npath = "{SMOLLM2}"\nn_ctx = 2048\n\n'
                                          f'[models.tiny2]\npath = "{other}"\nn_ctx = 2048\n', encoding="utf-8")
    mine = tmp_path / "my_pairs.jsonl"
    mine.write_text(json.dumps({"instruction": "2 + 2 = ?", "right": "4", "wrong": "5"}) + "\n"
                    + json.dumps({"instruction": "Capital of Japan?", "right": "Tokyo.", "wrong": "Osaka."}) + "\n",
                    encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--judge", "tiny", "tiny2", "--models-toml", str(tmp_path / "models.toml"), "--out", str(out),
                 "--pairs", str(mine)]) == 0
    printed = capsys.readouterr().out
    assert "the judges side by side, on the 2 pairs of" in printed and "95% CI" in printed
    checks = [json.loads(check_path(out, name).read_text(encoding="utf-8")) for name in ("tiny", "tiny2")]
    for check in checks:
        assert check["n_pairs"] == 2 and check["pairs_file"] == str(mine) and check["calls"]["made"] == 4
        assert check["accuracy_ci_low"] <= check["accuracy"] <= check["accuracy_ci_high"]
    table = printed.split("side by side", 1)[1].splitlines()[2:4]
    assert [line.split()[0] for line in table] == ["tiny", "tiny2"]
    assert checks[0]["accuracy"] == checks[1]["accuracy"]  # the same weights judge alike
