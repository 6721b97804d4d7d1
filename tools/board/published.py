"""Published leaderboards beside ours: AlpacaEval 2.0, AlpacaEval 1.0 and Arena-Hard-Auto v0.1.

    section = published_section(set_info["published"], board_rows, judge_name)   # or None
    sections = published_sections(set_info, board_rows, judge_name)   # for the views: [] or [section]

A set's sidecar (tools/lib/benchsets.py) names its published table: {"path": "alpaca_eval:<csv
inside the installed alpaca_eval package>" or "data/published/<file>.csv", "judge": "...",
"comparable_with": "<JUDGE value>"}. The section shows the well-known rows of that table and
the rows nearest to each of our models (by LC win rate where the table has it, else its score),
with win rate, LC win rate (or the Arena-Hard score and its interval) and length, our models
marked among them, labelled with the table's judge and a plain sentence on when the numbers
are comparable: only when our JUDGE is the one that made the table.
Does not handle: several published tables for one set, or tables of other shapes.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lib.records import InputError

ROOT = Path(__file__).resolve().parent.parent.parent
NEAREST = 2  # published rows shown above and below each of our models
# Rows a reader knows (shown when present in the table), in no particular order.
WELL_KNOWN = [
    "gpt4_1106_preview", "gpt-4o-2024-05-13", "gpt-4-turbo-2024-04-09", "gpt4_0613", "gpt4", "gpt35_turbo_instruct",
    "gpt-3.5-turbo-0613", "gpt-3.5-turbo-1106", "claude-3-opus-20240229", "claude-3-5-sonnet-20240620", "claude",
    "claude-2", "Meta-Llama-3-70B-Instruct", "Meta-Llama-3-8B-Instruct", "llama-2-70b-chat-hf",
    "llama-2-7b-chat-hf", "Mistral-7B-Instruct-v0.2", "Mixtral-8x7B-Instruct-v0.1", "Qwen1.5-72B-Chat",
    "gemma-7b-it", "gemma-2b-it", "chatglm2-6b", "baichuan-13b-chat", "vicuna-7b", "alpaca-7b", "text_davinci_003",
    "chatgpt", "gpt-4-0314", "gpt-4-0613", "gpt-3.5-turbo-0125", "llama-3-70b-instruct", "llama-3-8b-instruct",
    "mixtral-8x7b-instruct-v0.1", "qwen1.5-72b-chat", "gemma-1.1-7b-it", "claude-3-haiku-20240307",
]


def published_path(spec: dict) -> Path:
    """The CSV a sidecar's `published.path` names."""
    path = str(spec.get("path") or "")
    if path.startswith("alpaca_eval:"):
        from lib.benchsets import alpaca_eval_dir

        return alpaca_eval_dir() / path.split(":", 1)[1]
    return Path(path) if Path(path).is_absolute() else ROOT / path


def load_published(spec: dict) -> pd.DataFrame:
    """One row per published model: model, win_rate, lc_win_rate, score, score_low, score_high,
    length, length_unit (whichever the table has; NaN otherwise)."""
    path = published_path(spec)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"published leaderboard {path} cannot be read ({err}); reinstall alpaca-eval or "
                         "run make data again") from None
    first = raw.columns[0]
    table = pd.DataFrame({"model": raw["model"] if "model" in raw else raw[first]})
    table["win_rate"] = raw.get("win_rate", math.nan)
    table["lc_win_rate"] = raw.get("length_controlled_winrate", math.nan)
    table["score"] = raw.get("score", math.nan)
    table["score_low"] = raw.get("rating_q025", math.nan)
    table["score_high"] = raw.get("rating_q975", math.nan)
    if "avg_tokens" in raw:
        table["length"], table["length_unit"] = raw["avg_tokens"], "tokens"
    else:
        table["length"], table["length_unit"] = raw.get("avg_length", math.nan), "characters"
    return table


def _key(table: pd.DataFrame) -> str:
    for column in ("lc_win_rate", "score", "win_rate"):
        if table[column].notna().any():
            return column
    raise InputError("published leaderboard has no win rate or score column")


def nearby_rows(table: pd.DataFrame, ours: dict[str, float], key: str) -> pd.DataFrame:
    """Well-known rows, plus the NEAREST published rows above and below each of our values;
    ours inserted where they rank, best first, `source` saying which row is whose."""
    ranked = table[table[key].notna()].sort_values(key, ascending=False).reset_index(drop=True)
    keep = set(ranked.index[ranked["model"].isin(WELL_KNOWN)])
    for value in ours.values():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        below = int((ranked[key] > value).sum())  # our model would rank here
        keep.update(range(max(below - NEAREST, 0), min(below + NEAREST, len(ranked))))
    shown = ranked.loc[sorted(keep)].assign(source="published")
    return shown


def published_section(spec: dict | None, board: pd.DataFrame, judge_name: str,
                      arena: pd.DataFrame | None = None) -> tuple[str, pd.DataFrame, str] | None:
    """(title, table, note) for the board's views, or None when the set has no published table.
    `board`: our board (index model; lc_win_rate, win_rate, avg_length); `arena`: our Arena-Hard
    scores (index model; score, score_low, score_high), used instead when the table has scores."""
    if not spec or not spec.get("path"):
        return None
    table = load_published(spec)
    key = _key(table)
    use_arena = key == "score" and arena is not None and len(arena)
    if use_arena:
        ours = {m: float(r["score"]) for m, r in arena.iterrows()}
    else:
        column = key if key in board.columns else "win_rate"  # our LC is NaN with too few answers
        ours = {m: float(r["win_rate"] if pd.isna(r[column]) else r[column]) for m, r in board.iterrows()}
    shown = nearby_rows(table, ours, key)
    mine = pd.DataFrame({"model": [f"{m} (ours)" for m in ours], key: list(ours.values()), "source": "ours"})
    if use_arena:
        mine["score_low"] = [float(arena.loc[m, "score_low"]) for m in ours]
        mine["score_high"] = [float(arena.loc[m, "score_high"]) for m in ours]
        mine["length"] = [float(arena.loc[m, "avg_tokens"]) if "avg_tokens" in arena else math.nan for m in ours]
        mine["length_unit"] = "tokens"
    else:
        mine["win_rate"] = [float(board.loc[m, "win_rate"]) for m in ours]
        mine["lc_win_rate"] = [float(board.loc[m, "lc_win_rate"]) for m in ours]
        mine["length"] = [float(board.loc[m, "avg_length"]) for m in ours]
        mine["length_unit"] = "characters"
    merged = pd.concat([shown, mine], ignore_index=True).sort_values(key, ascending=False, kind="stable")
    comparable = spec.get("comparable_with")
    same = bool(comparable) and judge_name == comparable
    judge = spec.get("judge") or "?"
    note = (f"Published leaderboard ({published_path(spec).name}), judged by {judge}: its well-known rows and "
            f"the {NEAREST} rows nearest above and below each of our models. These numbers are comparable with "
            f"ours only when JUDGE={comparable}" + (" (it is: this board used it)." if same else
                                                     f"; this board's judge is {judge_name}, so they are not."))
    return f"Published leaderboard (judge: {judge})", display(merged, key), note


def published_sections(info: dict | None, board: pd.DataFrame, judge_name: str,
                       ours: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame, str, str]]:
    """[(title, table, note, html id)] for the views: the set's published table beside ours (none
    without one; a table that cannot be read says so in its section)."""
    try:
        section = published_section((info or {}).get("published"), board, judge_name, ours)
    except InputError as err:
        section = ("Published leaderboard", pd.DataFrame(), f"not shown: {err}")
    return [] if section is None else [(*section, "published")]


def _fmt(value, digits=1) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def display(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """The shown columns, formatted; rank counts published rows only."""
    out = {"model": list(rows["model"]), "source": list(rows["source"])}
    if key == "score":
        out["score (win rate vs baseline)"] = [_fmt(v) for v in rows["score"]]
        out["95% CI"] = ["" if pd.isna(lo) else f"[{lo:.1f}, {hi:.1f}]"
                         for lo, hi in zip(rows.get("score_low", math.nan), rows.get("score_high", math.nan))]
    else:
        out["win rate"] = [_fmt(v) for v in rows["win_rate"]]
        out["LC win rate"] = [_fmt(v) for v in rows["lc_win_rate"]]
    out["length"] = [("" if pd.isna(v) else f"{v:.0f} {u}") for v, u in zip(rows["length"], rows["length_unit"])]
    return pd.DataFrame(out)
