"""Judges: a model from models.toml (or an alpaca_eval annotator) that compares two answers.

    judge = resolve_judge("smollm2_135m", registry, out_dir)
    for call, result in judge.judge(calls): ...   # result: {"preference", "soft", ...} or {"error"}

A judge is resolved by name into one object with one method, `judge(calls)`, answered by the
same backends that answer questions (tools/backends/), one file per kind:
- llama_judge.py: a GGUF model (backend llama.cpp), in-process and batched: the logits of `m`
  and `M` after the prompt give P(first better) exactly (protocol logits-v2);
- hf_judge.py: a transformers model, the same way;
- api_judge.py: `backend = "openai"`: the openai package, `concurrency` calls in flight, retries
  with backoff; the top-20 logprobs of the one answer token (protocol logprob-v1);
- annotator_judge.py: alpaca_eval's annotators (chatgpt_fn, weighted_alpaca_eval_gpt4_turbo,
  claude, ...) or a configs.yaml, with alpaca_eval's own concurrency.
Labelled calls (a reply ending in `[[label]]` out of a fixed set: 1-10 ratings, Arena-Hard's
verdicts) are labels.py's: `label_calls(judge, calls, out_dir)`, answered by `judge.label(calls)`
(local judges read the label from the logits, local_labels.py). The pairwise prompt and its
parsing are in prompt.py; calls, the verdict cache and the asking loop in
cache.py; pairs in both orders and their combination in pairs.py; identities without secrets in
identity.py. Verdicts are keyed by the judge's `identity` (weights hash, or API model and
endpoint, or annotator config, plus the protocol): bump a protocol when its verdicts change.
Not handled: several judges voting (a caller may resolve several), custom-function judges.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

from judges.cache import Call, JudgeError, judge_calls  # noqa: F401  (the package's API)
from judges.identity import file_sha256, mask, public_url, scrub, sha256_text  # noqa: F401
from judges.pairs import Pair, combine, judge_pairs  # noqa: F401
from judges.prompt import alpaca_eval_configs_dir, prompt_template, verdict_token_ids
from records import InputError

# alpaca_eval imports pkg_resources, which warns on every run: not our reader's concern.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

LOCAL_PROTOCOL = "logits-v2"  # exact P(m) from the logits (v1: top-20 logprobs through a server)


class Judge:
    """A judge: its name, kind and identity, and `judge(calls)`."""
    kind = ""
    concurrency = 1  # calls in flight (for the progress and the failure count)

    def __init__(self, name: str, identity: dict):
        self.name, self.identity = name, identity

    @property
    def judge_id(self) -> str:
        return sha256_text(json.dumps(self.identity, sort_keys=True, ensure_ascii=False))[:16]

    @property
    def protocol(self) -> str:
        return self.identity.get("protocol", "")

    def judge(self, calls: list[Call]) -> Iterator[tuple[Call, dict]]:
        """(call, result) for each call, in any order, as they are answered; a generator, so
        closing it stops the rest."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Values to mask in anything this judge's errors say."""
        return []

    def close(self) -> None:
        """Free what the judge holds (a loaded model, a client)."""


class LocalJudge(Judge):
    """A judge whose model runs in this process (llama_judge.py, hf_judge.py): loaded on first use,
    with the token ids of the two verdict words; any failure to load is one JudgeError."""

    def __init__(self, spec, identity: dict):
        super().__init__(spec.name, identity)
        self.spec = spec
        self.model = None
        self.last_stats: dict = {}

    def _open(self):
        """(the loaded model, with a close(); its encoder: word -> token ids)."""
        raise NotImplementedError

    def _load(self):
        if self.model is None:
            model = None
            try:
                model, encode = self._open()
                try:
                    self.token_ids = verdict_token_ids(encode)
                except ValueError as err:  # it can still grade (labels); pairwise verdicts say why not
                    self.token_ids, self.no_verdict = None, f"judge '{self.name}': {err}"
            except (FileNotFoundError, ValueError, RuntimeError) as err:
                if model is not None:
                    model.close()
                raise JudgeError(f"judge '{self.name}': {err}") from None
            self.model = model
        return self.model

    def _verdict_ids(self):
        """The two verdict tokens' ids, loaded; JudgeError when its vocabulary has none (pairwise only)."""
        self._load()
        if self.token_ids is None:
            raise JudgeError(self.no_verdict)
        return self.token_ids

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


def resolve_judge(name: str, registry, out_dir: Path, check_only: bool = False) -> Judge:
    """The judge called `name`: a model in models.toml, an alpaca_eval annotator config, or a
    path to a configs.yaml. Raises InputError (one line, what to do) when it cannot be used,
    e.g. when its API key is not set. `check_only`: do not require or hash the weights yet."""
    if name in registry.models:
        spec = registry.models[name]
        if spec.backend == "openai":
            from judges.api_judge import ApiJudge
            return ApiJudge(spec)
        if spec.backend not in ("llama.cpp", "transformers"):
            raise InputError(f"judge '{name}': a judge from {registry.source} must use the llama.cpp, "
                             "transformers or openai backend; pick another JUDGE")
        if spec.backend == "llama.cpp" and (spec.path is None or Path(spec.path).suffix != ".gguf"):
            raise InputError(f"judge '{name}': its GGUF is made by make quantize; run: make judge-weights JUDGE={name}")
        identity = {"kind": spec.backend, "protocol": LOCAL_PROTOCOL, "prompt_sha256": sha256_text(prompt_template())}
        if spec.chat_template:
            identity["chat_template_sha256"] = sha256_text(spec.chat_template)
        if not check_only:
            identity["weights_sha256"] = _weights_id(spec, Path(out_dir))
        if spec.backend == "llama.cpp":
            from judges.llama_judge import LlamaJudge
            return LlamaJudge(spec, identity)
        from judges.hf_judge import HFJudge
        return HFJudge(spec, identity)
    from judges.annotator_judge import resolve_annotator
    judge = resolve_annotator(name, registry.source, check_only)
    if judge is None:
        raise InputError(f"judge '{name}' is neither a model in {registry.source} nor an alpaca_eval "
                         "annotator config (e.g. chatgpt_fn, alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo)")
    return judge


def _weights_id(spec, out_dir: Path) -> str:
    from hashes import weights_sha256

    path = Path(spec.path) if spec.path is not None else None
    if path is None or not path.exists():
        raise InputError(f"judge '{spec.name}': weights not found at {path}; run: make judge-weights JUDGE={spec.name}")
    return weights_sha256(path, out_dir / "judge" / "file_hashes.json")  # a file, or a transformers folder


def run_reporting_errors(doing: str, work: Callable[[], int]) -> int:
    """Run a judging tool's work; any error is one line on stderr, never a traceback
    (LLMEVAL_DEBUG=1 shows it), with any key masked. Verdicts are cached as they come, so
    none is lost either way."""
    from registry import RegistryError

    try:
        return work()
    except (RegistryError, InputError) as err:
        print(f"error: {mask(str(err))}", file=sys.stderr)
        return 2
    except JudgeError as err:
        print(f"error: {mask(str(err))}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno != errno.ENOSPC and os.environ.get("LLMEVAL_DEBUG"):
            raise
        if err.errno == errno.ENOSPC:
            where = f" writing {err.filename}" if err.filename else ""
            print(f"error: disk full{where}: free some space and run again (every verdict so far is kept)",
                  file=sys.stderr)
        else:
            print(f"error: {doing} failed: {mask(str(err))} (every verdict so far is kept)", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("LLMEVAL_DEBUG"):
            raise
        print(f"error: {doing} failed: {type(err).__name__}: {mask(str(err))} (every verdict so far is kept; "
              "LLMEVAL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted {doing}: every verdict so far is kept; run again to finish", file=sys.stderr)
        return 130
