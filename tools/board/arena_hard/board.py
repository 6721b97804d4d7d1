"""The board with PROTOCOL=arena_hard: Arena-Hard-Auto v0.1's two games per prompt, its scores,
its files, and the published tables beside ours (for tools/board/cli.py, through protocols.py).

- judge_games: for every (model, question) pair, game 1 (the reference/baseline as assistant A)
  and game 2 (the model as A), labelled calls of board/arena_hard/judge.py (local judges: labels
  from logits, never a dropped game; API judges: text, a second attempt, conflicting labels
  dropped and counted). Identical answers are a tie in both games, without a call. Each pair
  also gets the board's usual result (both orders combined: win rate, consistency, by dataset),
  each game's label as a preference (A>>B 1 ... B>>A 2; a dropped game a tie);
- arena_section: the Arena-Hard score of each model (tools/board/arena_hard/score.py: battles, Bradley-Terry,
  bootstrap) plain and style-controlled, the games dropped, the average answer tokens; also
  written to OUT/board_arena_hard.csv;
- export: Arena-Hard's own files, OUT/arena_hard/question.jsonl, model_answer/NAME.jsonl
  (choices/turns with token_len, conv_metadata for style control) and
  model_judgment/JUDGE/NAME.jsonl (games with user_prompt, judgment, score), in the layout of its
  show_result.py at 0489bf3, so its own scripts can read our boards;
- extra_sections: that section and the published leaderboard's (tools/board/published.py);
- build_arena: the builder (tools/board/protocols.py): load the answers, play the games, then write
  the pairwise board's files (board/pairwise/board.py write_board) with that section.
Not handled: several judges under arena_hard (one judge plays the games), model-vs-model games.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from board.arena_hard.score import STYLE, arena_scores, dropped_games, markdown_detail, style_of, to_battles, token_counter
from lib.records import InputError, write_atomic

NOTE = ("Arena-Hard-Auto v0.1: two games per prompt (the baseline as assistant A, then as B), the judge's "
        "label out of [[A>>B]] [[A>B]] [[A=B]] [[B>A]] [[B>>A]]; a >> label counts as 3 battles. Score: the win "
        "rate against the baseline implied by a Bradley-Terry fit over the battles, with the 2.5-97.5 percentiles "
        "of 100 bootstrap rounds (battles resampled, seed 42, as its show_result.py does); style-controlled: the "
        "same fit with its length and markdown features (headers, lists, bold).")


def _max_tokens(judge, config: dict, fast: bool) -> int:
    """A local judge writes at most its own models.toml max_tokens (Arena-Hard allows the config's
    4,096; set max_tokens = 4096 on the judge for that); an API judge the config's."""
    from judges.api_judge import ApiJudge

    allowed = int(config.get("max_tokens", 4096))
    if fast or isinstance(judge, ApiJudge) or getattr(judge, "spec", None) is None:
        return allowed
    return min(int(judge.spec.max_tokens), allowed)


def judge_games(judges: list, pairs: list, out_dir: Path, info: dict, fast: bool, progress):
    """(board results like judges.judge_pairs', games for arena.py, call stats dict, the judge)."""
    from judges.cache import Call
    from board.arena_hard.judge import arena_judge, labelled_call, load_judge_config, preference
    from judges.labels import label_calls
    from judges.pairs import combine

    if len(judges) != 1:
        raise InputError("PROTOCOL=arena_hard plays its games with one judge: name one JUDGE (or PROTOCOL=pairwise)")
    path = ((info or {}).get("files") or {}).get("judge_config")
    if not path:
        raise InputError("PROTOCOL=arena_hard needs Arena-Hard's judge_config.yaml: use QUESTIONS=arena_hard "
                         "(make data fetches it), or PROTOCOL=pairwise")
    config = load_judge_config(path)
    judge = arena_judge(judges[0], config)
    max_tokens = _max_tokens(judge, config, fast)

    def game(pair, n):  # game 1: the baseline as A; game 2: the model as A
        a, b = (pair.reference_output, pair.model_output) if n == 1 else (pair.model_output, pair.reference_output)
        return labelled_call(config, Call(pair.instruction, a, b), fast, max_tokens)

    calls = [game(p, n) for p in pairs if not p.identical for n in (1, 2)]
    started = time.monotonic()
    try:
        records, stats = label_calls(judge, calls, out_dir, progress=progress)
    finally:
        judge.close()
    results, games = [], []
    for pair in pairs:
        result = {"model": pair.model, "question_id": pair.question_id, "instruction": pair.instruction,
                  "model_output": pair.model_output, "reference_output": pair.reference_output,
                  "identical": pair.identical, "pref_model_first": None, "pref_reference_first": None,
                  "preference": None, "consistent": None, "n_calls": 0, "n_failed": 0, "labels": {}}
        if pair.identical:
            result["preference"] = 1.5
            got = {1: {"label": "A=B", "judgment": "", "identical": True}, 2: {"label": "A=B", "judgment": "",
                                                                                "identical": True}}
        else:
            got = {n: records.get(game(pair, n)) for n in (1, 2)}
            result["n_calls"], result["n_failed"] = 2, sum(v is None for v in got.values())
            if got[2]:
                result["pref_model_first"] = preference(got[2])
            if got[1]:
                result["pref_reference_first"] = preference(got[1])
            if all(got.values()):
                result["preference"], result["consistent"] = combine(result["pref_model_first"],
                                                                     result["pref_reference_first"])
        for n, record in got.items():
            if record is None:
                continue
            result["labels"][f"game{n}"] = record.get("label") or None
            games.append({"model": pair.model, "question_id": pair.question_id, "game": n,
                          "label": record.get("label") or None, "judgment": record.get("judgment") or "",
                          "dropped": record.get("dropped"), "source": record.get("source"),
                          "user_prompt": game(pair, n).messages()[-1]["content"]})
        results.append(result)
    summary = {"made": stats.made, "reused_from_cache": stats.reused, "failed": stats.failed,
               "errors": [f"{judge.name}: {e}" for e in stats.errors], "seconds": stats.seconds or
               time.monotonic() - started, "max_tokens": max_tokens, "fast": fast,
               "dropped": sum(bool(g.get("dropped")) for g in games)}
    return results, games, summary, judge


def set_ids(questions_path: Path | None) -> dict:
    """question_key -> the set's own question id (Arena-Hard's uid), from the normalized questions."""
    from lib.records import question_key

    found = {}
    if questions_path is not None and Path(questions_path).suffix == ".jsonl":
        for line in Path(questions_path).read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                found[question_key(record)] = record.get("question_id")
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return found


def judge_arena(judges: list, pairs: list, reference: list[dict], out_dir: Path, info: dict, fast: bool, progress,
                questions_path: Path | None = None):
    """(ensemble.Judged for the board's usual numbers, the Arena-Hard part: table, about, games,
    the judge's name and what it did)."""
    from board.pairwise.ensemble import Judged
    from lib.records import question_key

    results, games, stats, judge = judge_games(judges, pairs, out_dir, info, fast, progress)
    baseline = reference[0]["generator"]
    table, about = arena_table(games, results, baseline, out_dir)
    questions = {i: r for i, r in enumerate({question_key(r): r for r in reference}.values())}
    known = set_ids(questions_path)
    ids = {i: known.get(question_key(r)) or r.get("question_id") or i for i, r in questions.items()}
    folder = export(out_dir, questions, results, games, baseline, judge.name, ids)
    about.update(folder=str(folder), dropped=stats["dropped"], max_tokens=stats["max_tokens"], fast=fast,
                 labels_from="the label's logits" if hasattr(judge, "spec") and judge.kind != "openai" else "the text")
    write_atomic(Path(out_dir) / "board_arena_hard.csv", table.to_csv().encode("utf-8"))
    judged = Judged(results, [], {judge.name: results}, stats)
    return judged, {"table": table, "about": about, "judge": judge}


def arena_table(games: list[dict], results: list[dict], baseline: str, out_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Per model: score [low, high], style-controlled score [low, high], battles, games,
    games dropped, average answer tokens; and what the fits used."""
    count, tokenizer = token_counter(Path(out_dir) / "judge" / "tiktoken")
    style = {}
    for r in results:
        style[(r["model"], r["question_id"])] = style_of(r["model_output"], count)
        style[(baseline, r["question_id"])] = style_of(r["reference_output"], count)
    battles = to_battles(games, baseline)
    plain, _ = arena_scores(battles, baseline)
    styled, about = arena_scores(battles, baseline, style=style) if len(battles) else (plain.iloc[0:0], {})
    dropped = dropped_games(games)
    tokens = pd.Series({m: sum(v["token_len"] for (mm, _), v in style.items() if mm == m) /
                        max(1, sum(1 for (mm, _) in style if mm == m)) for m in {k[0] for k in style}})
    table = pd.DataFrame(index=pd.Index([m for m in plain.index if m != baseline] + [baseline], name="model"))
    for column in ("score", "score_low", "score_high", "n_battles"):
        table[column] = plain[column]
    for column in ("score", "score_low", "score_high"):
        table[f"sc_{column}"] = styled[column] if len(styled) else float("nan")
    table["n_games"] = [sum(1 for g in games if g["model"] == m or m == baseline) for m in table.index]
    table["n_dropped"] = [sum(dropped.values()) if m == baseline else dropped.get(m, 0) for m in table.index]
    table["avg_tokens"] = [round(float(tokens.get(m, float("nan"))), 1) for m in table.index]
    return table.sort_values("score", ascending=False), {**about, "tokenizer": tokenizer,
                                                        "n_battles": int(len(battles))}


def display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(lo, hi):
        return "" if pd.isna(lo) else f"[{lo:.1f}, {hi:.1f}]"

    return pd.DataFrame({
        "model": list(table.index),
        "score": [f"{v:.1f}" for v in table["score"]],
        "95% CI": [ci(lo, hi) for lo, hi in zip(table["score_low"], table["score_high"])],
        "style-controlled": ["" if pd.isna(v) else f"{v:.1f}" for v in table["sc_score"]],
        "style 95% CI": [ci(lo, hi) for lo, hi in zip(table["sc_score_low"], table["sc_score_high"])],
        "battles": [str(int(v)) for v in table["n_battles"]],
        "games (dropped)": [f"{int(g)} ({int(d)})" for g, d in zip(table["n_games"], table["n_dropped"])],
        "avg tokens": [f"{v:.0f}" for v in table["avg_tokens"]]})


def export(out_dir: Path, questions: dict[int, dict], results: list[dict], games: list[dict], baseline: str,
           judge_name: str, question_ids: dict) -> Path:
    """Arena-Hard's files under OUT/arena_hard (see the module docstring); returns the folder.
    questions: our question index -> its reference record; question_ids: index -> the set's own id."""
    count, _ = token_counter(Path(out_dir) / "judge" / "tiktoken")
    root = Path(out_dir) / "arena_hard"
    lines = [json.dumps({"question_id": question_ids[i], "category": "arena-hard-v0.1", "cluster": q.get("dataset", ""),
                         "turns": [{"content": q["instruction"]}]}, ensure_ascii=False) for i, q in questions.items()]
    write_atomic(root / "question.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    answers: dict[str, dict] = {}
    for r in results:
        answers.setdefault(r["model"], {})[r["question_id"]] = r["model_output"]
        answers.setdefault(baseline, {})[r["question_id"]] = r["reference_output"]
    for model, by_question in answers.items():
        rows = []
        for qid in sorted(by_question):
            text = by_question[qid]
            n = count(text)
            rows.append({"question_id": question_ids[qid], "answer_id": f"{model}-{question_ids[qid]}",
                         "model_id": model, "choices": [{"index": 0, "turns": [{"content": text, "token_len": n}]}],
                         "tstamp": 0, "conv_metadata": {"token_len": n, **markdown_detail(text)}})
        write_atomic(root / "model_answer" / f"{model}.jsonl",
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    by_pair: dict[tuple, dict] = {}
    for g in games:
        by_pair.setdefault((g["model"], g["question_id"]), {})[g["game"]] = g
    judged: dict[str, list] = {}
    for (model, qid), both in sorted(by_pair.items(), key=lambda kv: kv[0][0]):  # questions as the games came
        if set(both) != {1, 2}:
            continue  # a game without a verdict yet: Arena-Hard writes a judgment only when both are done
        judged.setdefault(model, []).append({
            "question_id": question_ids[qid], "model": model, "judge": judge_name,
            "games": [{"user_prompt": both[n]["user_prompt"], "judgment": both[n]["judgment"],
                       "score": both[n]["label"]} for n in (1, 2)]})
    folder = root / "model_judgment" / judge_name
    for model, rows in judged.items():
        write_atomic(folder / f"{model}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
    return root


def extra_sections(info: dict | None, board: pd.DataFrame, judge_name: str, arena: pd.DataFrame | None,
                   arena_about: dict | None) -> list[tuple[str, pd.DataFrame, str, str]]:
    """(title, table, note, html id) for the views: Arena-Hard's scores, then the published table."""
    from board.published import published_sections

    found = []
    if arena is not None and len(arena):
        note = NOTE + (f" Style coefficients: {arena_about.get('style_coefficients')}; tokens counted with "
                       f"{arena_about.get('tokenizer')}." if arena_about else "")
        found.append(("Arena-Hard-Auto v0.1 score", display(arena), note, "arena-hard"))
    ours = None if arena is None else arena.drop(index=[m for m in arena.index if m not in board.index])
    return found + published_sections(info, board, judge_name, ours)


def build_arena(args, registry, judges: list) -> int:
    """The builder of PROTOCOL=arena_hard (tools/board/protocols.py): the games, then the pairwise
    board's files (board/pairwise/board.py write_board) with Arena-Hard's section and manifest entry."""
    from board.pairwise.board import load, log, write_board

    started = time.monotonic()
    answers = load(args)
    judged, arena = judge_arena(judges, answers.pairs, answers.reference, args.out, answers.info, args.fast, log,
                                args.questions)
    labels = f"Arena-Hard-Auto v0.1, labels read from {arena['about']['labels_from']}" + \
        (", fast: no explanation" if args.fast else "")
    return write_board(args, registry, judges, answers, judged, "arena_hard", started, judge_protocol=labels,
                       about_extra={"arena_hard": dict(arena["about"])},
                       sections=lambda board, name: extra_sections(answers.info, board, name, arena["table"],
                                                                   arena["about"]))


__all__ = ["judge_games", "arena_table", "export", "extra_sections", "build_arena", "STYLE"]
