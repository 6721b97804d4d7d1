"""Judge every model against the reference with alpaca_eval: OUT/board.csv, printed as a table.

    python tools/board.py --outputs out/output.json --reference out/reference.json --judge smollm2_135m

The judge is either a model from models.toml (a local GGUF served by llama_cpp.server on
127.0.0.1 for the length of the run, asked with alpaca_eval's logprob protocol: one token,
`m` or `M`, read from its log-probabilities, so every pair gets a verdict even from a tiny
model), or the name of one of alpaca_eval's own annotator configs (chatgpt_fn,
alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo, claude, ...), which needs its API key.
alpaca_eval is called through its Python API (its CLI crashes after writing the board), with
the plain win rate (its length-controlled one downloads data from the Hub) and its annotation
cache under OUT.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path

from records import InputError, read_json, write_json_atomic
from registry import RegistryError, load_registry

BOARD_COLUMNS = ["win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                 "discrete_win_rate", "avg_length"]
LOCAL_PROTOCOL = "logprob"  # alpaca_eval's weighted_alpaca_eval_gpt4_turbo protocol


def alpaca_eval_configs_dir() -> Path:
    import alpaca_eval

    return Path(alpaca_eval.__file__).parent / "evaluators_configs"


def api_key_for(config_name: str) -> str:
    return "ANTHROPIC_API_KEY" if "claude" in config_name else "OPENAI_API_KEY"


def write_local_judge_config(out_dir: Path, judge: str, base_url: str) -> Path:
    """An alpaca_eval annotator config that asks our local server with the logprob protocol."""
    import yaml

    template = alpaca_eval_configs_dir() / "alpaca_eval_clf_gpt4_turbo" / "alpaca_eval_clf.txt"
    name = f"local_{judge}_{LOCAL_PROTOCOL}"  # the cache is keyed by this name
    config = {name: {
        "prompt_template": str(template),
        "fn_completions": "openai_completions",
        "completions_kwargs": {
            "model_name": judge, "max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5,
            "requires_chatml": True, "num_procs": 1,  # llama_cpp.server answers one at a time
            "openai_api_base": base_url, "openai_api_keys": ["local-judge-needs-no-key"],
        },
        "fn_completion_parser": "logprob_parser",
        "completion_parser_kwargs": {"numerator_token": "m", "denominator_tokens": ["m", "M"],
                                     "is_binarize": False},
        "completion_key": "completions_all",
        "batch_size": 1,
    }}
    path = (out_dir / "judge" / name / "configs.yaml").resolve()  # alpaca_eval resolves relative names itself
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def judge_all(outputs: list[dict], reference: list[dict], annotators_config: str, out_dir: Path):
    """One alpaca_eval evaluation per model; returns the leaderboard as a DataFrame."""
    import pandas as pd
    from alpaca_eval.main import evaluate

    logging.getLogger().setLevel(logging.ERROR)  # alpaca_eval logs every step, and warns about our local judge
    rows = []
    for generator in dict.fromkeys(r["generator"] for r in outputs):
        model_outputs = [r for r in outputs if r["generator"] == generator]
        leaderboard, _ = evaluate(
            model_outputs=model_outputs, reference_outputs=reference, annotators_config=annotators_config,
            name=generator, output_path=None, precomputed_leaderboard=None, is_cache_leaderboard=False,
            fn_metric="get_winrate", sort_by="win_rate", is_return_instead_of_print=True,
            caching_path=str(out_dir / "annotations_cache.json"),
        )
        rows.append(leaderboard.loc[[generator]])
    board = pd.concat(rows)[BOARD_COLUMNS].sort_values("win_rate", ascending=False)
    board.index.name = "model"
    return board


def check_judge(judge: str, registry) -> bool:
    """True for a local judge (a model in models.toml); for an API judge, check its key is set."""
    if judge in registry.models:
        return True
    if not (alpaca_eval_configs_dir() / judge).is_dir():
        raise InputError(f"judge '{judge}' is neither a model in {registry.source} nor an "
                         "alpaca_eval annotator config (e.g. chatgpt_fn, alpaca_eval_gpt4)")
    key = api_key_for(judge)
    if not os.environ.get(key):
        raise InputError(f"judge '{judge}' needs {key}; export it, or use a local judge "
                         f"(JUDGE=<a model in {registry.source}>)")
    return False


def show(board_path: Path) -> int:
    """Print a board.csv as a table, with the judge and reference it was made with."""
    import pandas as pd

    try:
        board = pd.read_csv(board_path, index_col="model")
        about = read_json(board_path.with_name("board_info.json"))
    except (FileNotFoundError, ValueError, InputError) as err:
        print(f"error: cannot read {board_path} ({err}); run make board", file=sys.stderr)
        return 2
    print(f"\nLeaderboard (judge: {about['judge']}; reference: {about['reference']}; "
          f"questions: {about['n_questions']}) -> {board_path}")
    print(board.to_string(float_format=lambda v: f"{v:.2f}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=Path, metavar="BOARD_CSV", help="only print an existing board")
    parser.add_argument("--outputs", type=Path, help="merged answers (OUT/output.json)")
    parser.add_argument("--reference", type=Path, help="reference answers (OUT/reference.json)")
    parser.add_argument("--judge", help="a model from models.toml, or an alpaca_eval annotator config")
    parser.add_argument("--models-toml", default="models.toml")
    parser.add_argument("--out", default="out", type=Path)
    parser.add_argument("--check-judge", action="store_true", help="only check that the judge can run")
    args = parser.parse_args(argv)
    if args.show:
        return show(args.show)
    if not args.judge or not args.check_judge and not (args.outputs and args.reference):
        parser.error("--outputs, --reference and --judge are required (or --show BOARD_CSV)")
    try:
        registry = load_registry(args.models_toml)
        local = check_judge(args.judge, registry)
        if args.check_judge:
            return 0
        outputs, reference = read_json(args.outputs), read_json(args.reference)
        if not outputs:
            raise InputError(f"{args.outputs} holds no answers; run make infer")
    except (RegistryError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    warnings.filterwarnings("ignore")  # alpaca_eval's deprecation noise
    try:
        if local:
            from judge_server import judge_server

            spec = registry.get(args.judge)
            print(f"judging with local model '{spec.name}' ({LOCAL_PROTOCOL} protocol)...", file=sys.stderr)
            server = judge_server(spec, args.out / "judge" / "server.log")
        else:
            server = contextlib.nullcontext(None)
        with server as base_url:
            config = str(write_local_judge_config(args.out, args.judge, base_url)) if local else args.judge
            board = judge_all(outputs, reference, config, args.out)
    except KeyboardInterrupt:
        print("\ninterrupted: the judge server is stopped; run again to finish", file=sys.stderr)
        return 130
    except Exception as err:  # one line, not a traceback; the answers are untouched
        print(f"error: judging failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    board_path = args.out / "board.csv"
    write_json_atomic(board_path.with_name("board_info.json"), {
        "judge": args.judge, "reference": reference[0]["generator"],
        "n_questions": len({(r["instruction"], r.get("input", "")) for r in reference}),
    })
    tmp = board_path.with_suffix(".csv.tmp")
    board.to_csv(tmp)
    os.replace(tmp, board_path)
    print(f"board: {len(board)} models -> {board_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
