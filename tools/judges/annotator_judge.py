"""alpaca_eval's own annotators as judges: chatgpt_fn, alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo,
claude, ..., or a path to a configs.yaml of one's own.

They run through alpaca_eval's PairwiseAnnotator with its random order switch off (we show both
orders ourselves), with alpaca_eval's own concurrency (`num_procs` in the config's
completions_kwargs; its default is 5 requests in flight): calls go to it in chunks of a few per
request in flight, and each chunk's verdicts are cached as it returns. The config is written out
only for the length of the run, to a private temporary folder: one's own may hold an API key
(scrubbed from the identity; errors are masked).
Questions and answers are data, never markup: alpaca_eval fills its template with str.replace and
splits the result on `<|im_start|>` / `<|im_end|>` (prompt_to_chatml), so a zero-width space is put
after the `<` of those markers and after the `{` of the templates' placeholders in the texts it is
given (prompt.neutralise): a text cannot end the judge's message, start one, or be filled in.
Does not handle: other control tokens of the annotator's own model, should it tokenize them as such;
annotators that need more than one call per pair.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from judges.base import Judge
from judges.cache import JudgeError
from judges.identity import mask, public_url, scrub, sha256_text
from judges.pairs import as_pref
from judges.cache import valid_preference
from judges.prompt import PLACEHOLDER, alpaca_eval_configs_dir, neutralise
from lib.records import InputError

CHUNKS_PER_PROC = 2  # calls handed to alpaca_eval at once, per request it keeps in flight
DEFAULT_PROCS = 5  # alpaca_eval's constants.OPENAI_MAX_CONCURRENCY


def api_key_for(config_name: str) -> str:
    return "ANTHROPIC_API_KEY" if "claude" in config_name else "OPENAI_API_KEY"


def resolve_annotator(name: str, registry_source, check_only: bool) -> Judge | None:
    """The annotator judge `name`, or None when `name` is not one."""
    config = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not config.is_file():
            raise InputError(f"judge '{name}': annotator config file not found")
    elif (alpaca_eval_configs_dir() / name / "configs.yaml").is_file():
        config = alpaca_eval_configs_dir() / name / "configs.yaml"
        key = api_key_for(name)
        if not os.environ.get(key):
            raise InputError(f"judge '{name}' needs {key}; export it, or use a local judge "
                             f"(JUDGE=<a model in {registry_source}>)")
    else:
        return None
    if check_only:
        return Judge(name, {"kind": "alpaca_eval"})
    return AnnotatorJudge(name, config)


class AnnotatorJudge(Judge):
    kind = "alpaca_eval"

    def __init__(self, name: str, source: Path):
        import yaml
        from importlib.metadata import version

        try:
            configs = yaml.safe_load(source.read_text(encoding="utf-8"))
            if not isinstance(configs, dict) or not configs:
                raise ValueError("expected a mapping of annotator name -> settings")
            prompts = []
            for settings in configs.values():
                template = Path(settings["prompt_template"])
                if not template.is_absolute():  # alpaca_eval resolves these against the configs root
                    for root in (source.resolve().parents[1], alpaca_eval_configs_dir()):
                        if (root / template).is_file():
                            template = root / template
                            break
                settings["prompt_template"] = str(template.resolve())
                settings["is_randomize_output_order"] = False
                prompts.append(template.read_text(encoding="utf-8"))
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
            raise InputError(f"judge '{name}': cannot read annotator config {source}: {err}") from None
        portable = {k: {**v, "prompt_template": Path(v["prompt_template"]).name} for k, v in configs.items()}
        super().__init__(name, {
            "kind": "alpaca_eval", "config": scrub(portable), "protocol": "alpaca_eval-annotator-v1",
            "prompt_sha256": [sha256_text(p) for p in prompts], "alpaca_eval": version("alpaca-eval"),
            # the endpoint it will reach: alpaca_eval's variable, else the openai package's
            "openai_api_base": public_url(endpoint) if (endpoint := os.environ.get("OPENAI_API_BASE")
                                                       or os.environ.get("OPENAI_BASE_URL")) else ""})
        self.config = configs  # may hold a key: never written but to the private folder
        # every placeholder of its templates (alpaca_eval fills them all with str.replace)
        self.names = sorted({"instruction", "output_1", "output_2"} | {n for p in prompts for n in PLACEHOLDER.findall(p)})
        procs = [(v.get("completions_kwargs") or {}).get("num_procs") for v in configs.values()]
        self.concurrency = max([p for p in procs if isinstance(p, int) and p > 0] or [DEFAULT_PROCS])

    def secrets(self) -> list[str]:
        found = []

        def walk(value, key=""):
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, str(k))
            elif isinstance(value, list):
                for v in value:
                    walk(v, key)
            elif isinstance(value, str) and "key" in key.lower():
                found.append(value)
        walk(self.config)
        return found

    def judge(self, calls):
        import logging
        import tempfile
        import warnings

        import yaml
        from alpaca_eval.annotators import PairwiseAnnotator

        logging.getLogger().setLevel(logging.ERROR)  # alpaca_eval logs every step
        reasons = _ErrorLines()  # and an error with a traceback for each reply it cannot parse
        warnings.filterwarnings("ignore")
        with tempfile.TemporaryDirectory(prefix="llmeval-judge-") as folder:  # private (0700), removed after
            config = Path(folder) / "annotator" / "configs.yaml"
            config.parent.mkdir()
            config.write_text(yaml.safe_dump(self.config, allow_unicode=True), encoding="utf-8")
            try:
                annotator = PairwiseAnnotator(annotators_config=str(config), caching_path=None,
                                              is_avoid_reannotations=False, is_store_missing_annotations=False)
            except Exception as err:  # alpaca_eval raises anything
                raise JudgeError(f"judge '{self.name}': alpaca_eval cannot load it: {mask(str(err), self.secrets())}") from None
        chunk = max(4, CHUNKS_PER_PROC * self.concurrency)
        for start in range(0, len(calls), chunk):
            batch = calls[start:start + chunk]
            started = time.monotonic()
            reasons.lines.clear()
            # alpaca_eval fills its template and splits it on chatml markers itself: the data is given
            # to it neutralised (prompt.neutralise), so no marker or placeholder of it is found there.
            shown = {c: (neutralise(c.instruction, self.names), neutralise(c.first, self.names),
                         neutralise(c.second, self.names)) for c in batch}
            try:
                with reasons:
                    rows = annotator.annotate_pairs([
                        {"instruction": i, "output_1": a, "output_2": b} for i, a, b in shown.values()])
                found = {(r["instruction"], r["output_1"], r["output_2"]): r.get("preference") for r in rows}
            except Exception as err:  # alpaca_eval and its API clients raise anything
                replied = False
                found, error = {}, mask(f"{type(err).__name__}: {' '.join(str(err).split())[:300]}", self.secrets())
            else:
                replied = True
                why = mask(reasons.lines[-1], self.secrets()) if reasons.lines else "no choice found in it"
                error = f"no verdict: the annotator's reply did not parse ({why})"
            seconds = round((time.monotonic() - started) / len(batch), 3)
            for call in batch:
                pref = found.get(shown[call])
                if pref is not None and not (isinstance(pref, float) and math.isnan(pref)):
                    pref = as_pref(float(pref))
                if valid_preference(pref):
                    yield call, {"preference": pref, "soft": pref not in (1.0, 1.5, 2.0), "seconds": seconds}
                else:
                    yield call, {"error": error, "seconds": seconds, "unparsed": replied}


class _ErrorLines:
    """While entered: the root logger's records (alpaca_eval logs to it) kept as one line each,
    their exception's message included, and not printed."""

    def __init__(self):
        import logging

        self.lines: list[str] = []
        outer = self

        class Keep(logging.Handler):
            def emit(self, record):
                text = record.getMessage()
                if record.exc_info and record.exc_info[1] is not None:
                    text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
                outer.lines.append(" ".join(text.split())[:300])

        self.handler = Keep()

    def __enter__(self):
        import logging

        root = logging.getLogger()
        self.saved = root.handlers[:]
        root.handlers = [self.handler]
        return self

    def __exit__(self, *exc):
        import logging

        logging.getLogger().handlers = self.saved
        return False
