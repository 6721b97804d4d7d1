"""Which judge a name means: a model in models.toml (by its backend: llama.cpp, transformers,
openai) or an alpaca_eval annotator config, resolved into one Judge (judges/base.py); and the
error handling every judging tool shares (run_reporting_errors: one line, never a traceback).

    judge = resolve_judge("smollm2_135m", registry, out_dir)

Not handled: custom-function judges; several judges voting (a caller may resolve several).
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Callable

from judges.base import LOCAL_PROTOCOL, Judge
from judges.cache import JudgeError
from judges.identity import mask, sha256_text
from judges.prompt import prompt_template
from lib.records import InputError


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
    from lib.hashes import weights_sha256

    path = Path(spec.path) if spec.path is not None else None
    if path is None or not path.exists():
        raise InputError(f"judge '{spec.name}': weights not found at {path}; run: make judge-weights JUDGE={spec.name}")
    return weights_sha256(path, out_dir / "judge" / "file_hashes.json")  # a file, or a transformers folder


def run_reporting_errors(doing: str, work: Callable[[], int]) -> int:
    """Run a judging tool's work; any error is one line on stderr, never a traceback
    (LLMEVAL_DEBUG=1 shows it), with any key masked. Verdicts are cached as they come, so
    none is lost either way."""
    from lib.registry import RegistryError

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
