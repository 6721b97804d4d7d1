"""Replay AlpacaEval 2's published verdicts through the board, and print ours beside the official
figures (LC win rate and win rate):

    python tools/board/pairwise/replay.py [../shared/data/alpaca_eval2_replay]

Kept apart from lc.py so that the statistics (stats.py) import the LC fit, never the reverse.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

if __name__ == "__main__":  # run as a script: tools/ on the path, as for every stage
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def replay_results(folder) -> tuple[list[dict], pd.DataFrame]:
    """AlpacaEval 2's published verdicts (shared/data/alpaca_eval2_replay, see its README) as
    board.pairwise.stats.board_table's input, and the official leaderboard rows to compare with. Answers
    are stand-in strings of the published lengths: the board only measures their length."""
    import json
    from pathlib import Path

    folder = Path(folder)
    annotations = json.loads((folder / "annotations.json").read_text(encoding="utf-8"))
    official = pd.read_csv(folder / "official_leaderboard.csv", index_col=0)
    results = []
    for model, rows in annotations.items():
        for preference, len_reference, len_model, identical, question in rows:
            results.append({"model": model, "question_id": question, "preference": preference,
                            "model_output": "x" * int(len_model), "reference_output": "x" * int(len_reference),
                            "identical": bool(identical), "consistent": None,
                            "n_calls": 1, "n_failed": int(preference is None)})
    return results, official


def main() -> None:
    """Replay AlpacaEval 2's verdicts through the board and print ours beside the official figures."""
    import argparse

    from scipy.stats import spearmanr

    from board.pairwise.stats import board_table

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", nargs="?", default="../shared/data/alpaca_eval2_replay")
    results, official = replay_results(parser.parse_args().folder)
    board = board_table(results)
    table = pd.DataFrame({"win_rate": board["win_rate"], "official_wr": official["win_rate"],
                          "lc_win_rate": board["lc_win_rate"], "official_lc": official["length_controlled_winrate"],
                          "lc_se": board["lc_standard_error"], "official_lc_se": official["lc_standard_error"],
                          "avg_length": board["avg_length"]}).sort_values("official_lc", ascending=False)
    diff = table["lc_win_rate"] - table["official_lc"]
    print(table.round(2).to_string())
    print(f"win rate: max |ours - official| {(table['win_rate'] - table['official_wr']).abs().max():.2g}")
    print(f"LC: Spearman {spearmanr(table['lc_win_rate'], table['official_lc'])[0]:.4f}, "
          f"mean |diff| {diff.abs().mean():.2f}, mean diff {diff.mean():+.2f}, "
          f"max |diff| {diff.abs().max():.2f} ({diff.abs().idxmax()})")


if __name__ == "__main__":
    main()
