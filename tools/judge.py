"""Judge pairs of answers in both orders, with a verdict cache that survives crashes.

A *call* shows the judge one question and two answers, `first` and `second`, and gets back a
preference in alpaca_eval's convention: 1 = the first is better, 2 = the second, anything in
between for a soft (logprob) verdict, 1.5 a tie. A *pair* (a model's answer and the reference's
to one question) is judged twice, the model's answer shown first and then second, and the two
are combined: soft verdicts averaged, so discrete verdicts that disagree make a tie. Identical
answers are a tie without a call.

Judges (`resolve_judge`):
- "llama.cpp": a GGUF model from models.toml, served by judge_server.py on 127.0.0.1. Protocol
  `logprob`: alpaca_eval's weighted_alpaca_eval_gpt4_turbo prompt, one output token that a
  llama.cpp grammar restricts to `m` or `M`. The verdict is P(m) / (P(m) + P(M)) from the
  log-probabilities, or the grammar-forced token when neither is among the top 20, so a reply
  cannot fail to parse. Answers too long for the judge's context are cut to fit (and marked).
- "openai": a models.toml entry with backend = "openai" (base_url, api_model, api_key_env):
  the same prompt and logprobs, without the grammar (APIs don't take one).
- "alpaca_eval": one of alpaca_eval's annotator configs (chatgpt_fn, alpaca_eval_gpt4,
  weighted_alpaca_eval_gpt4_turbo, claude, ...) or a path to a configs.yaml of one, run through
  alpaca_eval's PairwiseAnnotator with its random order switch off (we do both orders).

The cache, OUT/judge/verdicts.jsonl, gets one line per call as soon as it is answered, keyed by
the judge's identity (weights file hash, or API model and endpoint, or annotator config, plus
the protocol) and the exact texts shown: a new judge never reuses old verdicts, a killed run
loses nothing, and a failed call (server error, timeout, an API reply with neither token) is
not cached, so the next run tries it again. Calls are sent one at a time.

Not handled: multi-turn questions; several judges voting; judges that need a chat_template
override (judge_server refuses them).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from records import InputError, append_jsonl, read_json, read_jsonl_lines, sha256_of, write_json_atomic

# alpaca_eval imports pkg_resources, which warns on every run: not our reader's concern.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

PROTOCOL = "logprob-v1"  # bump when the prompt or the parsing changes: old verdicts are then not reused
GRAMMAR = 'root ::= "m" | "M"'
TOP_LOGPROBS = 20
CUT_MARK = "\n[... cut to fit the judge's context]"
LOCAL_TIMEOUT_S = 600.0  # a large judge on a CPU can take minutes for a long prompt
API_TIMEOUT_S = 120.0
MAX_CONSECUTIVE_FAILURES = 5  # then the judge is down: stop asking, the next run retries the rest


class JudgeError(RuntimeError):
    """The judge cannot be used at all (server does not start, config broken): worded for the user."""


def run_reporting_errors(doing: str, work: Callable[[], int]) -> int:
    """Run a judging tool's work; any error is one line on stderr, never a traceback
    (LLMEVAL_DEBUG=1 shows it). Verdicts are cached as they come, so none is lost either way."""
    from registry import RegistryError

    try:
        return work()
    except (RegistryError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except JudgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if os.environ.get("LLMEVAL_DEBUG"):
            raise
        print(f"error: {doing} failed: {type(err).__name__}: {err} (every verdict so far is kept; "
              "LLMEVAL_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted {doing}: every verdict so far is kept and the judge server is stopped; "
              "run again to finish", file=sys.stderr)
        return 130


def alpaca_eval_configs_dir() -> Path:
    import alpaca_eval

    return Path(alpaca_eval.__file__).parent / "evaluators_configs"


def prompt_template() -> str:
    """alpaca_eval's prompt for weighted_alpaca_eval_gpt4_turbo: 'which is better, m or M?'."""
    path = alpaca_eval_configs_dir() / "alpaca_eval_clf_gpt4_turbo" / "alpaca_eval_clf.txt"
    return path.read_text(encoding="utf-8")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path, cache_path: Path) -> str:
    """The file's sha256, remembered by path, size and mtime so a big file is hashed once."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = read_json(cache_path) if cache_path.exists() else {}
    except InputError:
        cache = {}  # a broken cache is only a cache
    if not isinstance(cache, dict):
        cache = {}
    if key not in cache:
        cache[key] = sha256_of(path)
        write_json_atomic(cache_path, cache)
    return cache[key]


# Settings named like a credential (api_key, openai_api_keys, hf_token, ...; not max_tokens).
SECRET_NAME = re.compile(r"(?i)(^|_)(keys?|token|secrets?|password|auth)$")


def scrub(value, keep: tuple[str, ...] = ("api_key_env",)):
    """`value` without credentials: keys named like one dropped, URLs without user:password."""
    if isinstance(value, dict):
        return {k: scrub(v, keep) for k, v in value.items() if k in keep or not SECRET_NAME.search(str(k))}
    if isinstance(value, list):
        return [scrub(v, keep) for v in value]
    if isinstance(value, str) and "://" in value:
        return public_url(value)
    return value


def public_url(url: str) -> str:
    """A URL without any user:password part, fit for logs and manifests."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# ---------------------------------------------------------------------------------------------
# Which judge


@dataclass
class Judge:
    name: str
    kind: str  # "llama.cpp" | "openai" | "alpaca_eval"
    identity: dict  # everything that decides its verdicts, and no secret
    spec: object = None  # the models.toml entry (llama.cpp, openai)
    base_url: str | None = None  # openai
    api_model: str | None = None  # openai
    api_key_env: str | None = None  # openai: the NAME of the variable, never the key
    annotator_config: dict | None = None  # alpaca_eval: the config, order switch off (may hold a key)

    @property
    def judge_id(self) -> str:
        return sha256_text(json.dumps(self.identity, sort_keys=True, ensure_ascii=False))[:16]

    @property
    def protocol(self) -> str:
        return self.identity.get("protocol", "")


def api_key_for(config_name: str) -> str:
    return "ANTHROPIC_API_KEY" if "claude" in config_name else "OPENAI_API_KEY"


def resolve_judge(name: str, registry, out_dir: Path, check_only: bool = False) -> Judge:
    """The judge called `name`: a model in models.toml, an alpaca_eval annotator config, or a
    path to a configs.yaml. Raises InputError (one line, what to do) when it cannot be used,
    e.g. when its API key is not set. `check_only`: do not require or hash the weights yet."""
    if name in registry.models:
        spec = registry.models[name]
        backend = getattr(spec, "backend", "llama.cpp")
        if backend == "openai":
            return _openai_judge(name, spec)
        path = getattr(spec, "path", None)
        if backend != "llama.cpp" or path is None or Path(path).suffix != ".gguf":
            raise InputError(f"judge '{name}': a judge from {registry.source} must be a GGUF model "
                             "(llama.cpp backend) or backend = \"openai\"; pick another JUDGE")
        if check_only:
            return Judge(name, "llama.cpp", spec=spec, identity={"kind": "llama.cpp", "protocol": PROTOCOL})
        if not Path(path).is_file():
            raise InputError(f"judge '{name}': weights not found at {path}; run: make models")
        weights = file_sha256(Path(path), out_dir / "judge" / "file_hashes.json")
        return Judge(name, "llama.cpp", spec=spec, identity={
            "kind": "llama.cpp", "weights_sha256": weights, "protocol": PROTOCOL,
            "prompt_sha256": sha256_text(prompt_template())})
    config = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not config.is_file():
            raise InputError(f"judge '{name}': annotator config file not found")
    elif (alpaca_eval_configs_dir() / name / "configs.yaml").is_file():
        config = alpaca_eval_configs_dir() / name / "configs.yaml"
        key = api_key_for(name)
        if not os.environ.get(key):
            raise InputError(f"judge '{name}' needs {key}; export it, or use a local judge "
                             f"(JUDGE=<a model in {registry.source}>)")
    else:
        config = None
    if config is not None:
        if check_only:
            return Judge(name, "alpaca_eval", identity={"kind": "alpaca_eval"})
        return _alpaca_eval_judge(name, config, out_dir)
    raise InputError(f"judge '{name}' is neither a model in {registry.source} nor an alpaca_eval "
                     "annotator config (e.g. chatgpt_fn, alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo)")


def _openai_judge(name: str, spec) -> Judge:
    # backend = "openai" entries (registry.py): base_url, api_model, api_key_env.
    base_url = getattr(spec, "base_url", None) or "https://api.openai.com/v1"
    api_model = getattr(spec, "api_model", None) or name
    key_env = getattr(spec, "api_key_env", None)
    if key_env and not os.environ.get(key_env):
        raise InputError(f"judge '{name}' needs {key_env}; export it, or use a local judge")
    return Judge(name, "openai", spec=spec, base_url=base_url.rstrip("/"), api_model=api_model,
                 api_key_env=key_env, identity={
                     "kind": "openai", "base_url": public_url(base_url.rstrip("/")), "api_model": api_model,
                     "protocol": PROTOCOL, "prompt_sha256": sha256_text(prompt_template())})


def _alpaca_eval_judge(name: str, source: Path, out_dir: Path) -> Judge:
    """Read an alpaca_eval annotator config, with its prompt paths made absolute and its random
    order switch off (we show both orders ourselves). It is written out only for the length of
    the run, to a private temporary folder: a config of one's own may hold an API key."""
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
    return Judge(name, "alpaca_eval", annotator_config=configs, identity={
        "kind": "alpaca_eval", "config": scrub(portable), "protocol": "alpaca_eval-annotator-v1",
        "prompt_sha256": [sha256_text(p) for p in prompts], "alpaca_eval": version("alpaca-eval"),
        "openai_api_base": public_url(os.environ["OPENAI_API_BASE"]) if os.environ.get("OPENAI_API_BASE") else ""})


# ---------------------------------------------------------------------------------------------
# Calls and the cache


@dataclass(frozen=True)
class Call:
    """One question shown to the judge with two answers, in this order."""
    instruction: str
    first: str
    second: str

    def key(self, judge_id: str) -> str:
        blob = json.dumps([judge_id, self.instruction, self.first, self.second], ensure_ascii=False)
        return sha256_text(blob)[:32]


class VerdictCache:
    """An append-only JSONL file of verdicts, one line per call, written (and fsynced) the moment
    each arrives; a line torn by a crash is skipped on reading."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.verdicts: dict[str, dict] = {}
        for record in read_jsonl_lines(self.path):  # torn lines (even mid-character) skipped
            try:
                if _valid_preference(record["preference"]):
                    self.verdicts[record["key"]] = record
            except (KeyError, TypeError):
                continue

    def get(self, key: str) -> dict | None:
        return self.verdicts.get(key)

    def add(self, record: dict) -> None:
        append_jsonl(self.path, record)  # after a torn last line, on a line of its own
        self.verdicts[record["key"]] = record


def _valid_preference(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 1 <= value <= 2


@dataclass
class CallStats:
    made: int = 0
    reused: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # distinct error messages
    seconds: float = 0.0


def judge_calls(judge: Judge, calls: list[Call], out_dir: Path,
                progress: Callable[[str], None] | None = None) -> tuple[dict[Call, dict], CallStats]:
    """Verdicts for `calls` (a dict call -> cache record; failed calls are absent), asking the judge
    only for those not cached. Its server is started only when something is missing."""
    cache = VerdictCache(out_dir / "judge" / "verdicts.jsonl")
    stats = CallStats()
    verdicts: dict[Call, dict] = {}
    missing: list[Call] = []
    for call in dict.fromkeys(calls):
        record = cache.get(call.key(judge.judge_id))
        if record is None:
            missing.append(call)
        else:
            verdicts[call] = record
            stats.reused += 1
    if not missing:
        return verdicts, stats
    started = time.monotonic()
    say = progress or (lambda message: None)
    say(f"judge '{judge.name}': {len(missing)} calls to make ({stats.reused} cached)")
    consecutive = 0
    with _session(judge, out_dir) as ask:
        for i, (call, result) in enumerate(ask(missing), 1):
            if "error" in result:
                stats.failed += 1
                consecutive += 1
                if result["error"] not in stats.errors:
                    stats.errors.append(result["error"])
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    stats.failed += len(missing) - i
                    say(f"judge '{judge.name}': {consecutive} failures in a row; stopping, run again to retry")
                    break
                continue
            consecutive = 0
            record = {"key": call.key(judge.judge_id), "judge": judge.name, "judge_id": judge.judge_id,
                      "protocol": judge.protocol, **result}
            cache.add(record)
            verdicts[call] = record
            stats.made += 1
            if i % 10 == 0 or i == len(missing):
                say(f"judge '{judge.name}': {i}/{len(missing)} calls ({stats.failed} failed)")
    stats.seconds = time.monotonic() - started
    return verdicts, stats


# ---------------------------------------------------------------------------------------------
# Pairs: both orders, combined


@dataclass
class Pair:
    """A model's answer and the reference's to one question."""
    model: str
    instruction: str
    model_output: str
    reference_output: str
    question_id: int = 0

    @property
    def identical(self) -> bool:
        return self.model_output.strip() == self.reference_output.strip()

    def calls(self) -> tuple[Call, Call]:
        return (Call(self.instruction, self.model_output, self.reference_output),  # model first
                Call(self.instruction, self.reference_output, self.model_output))  # reference first


def combine(pref_model_first: float, pref_reference_first: float) -> tuple[float, bool]:
    """Both orders -> (alpaca_eval preference with the reference as output_1 and the model as
    output_2: 1 reference better, 2 model better, 1.5 tie; whether the two orders agree)."""
    won_a = 2 - _as_pref(pref_model_first)  # P(model better), model shown first
    won_b = _as_pref(pref_reference_first) - 1  # P(model better), model shown second
    agree = _side(won_a) == _side(won_b)
    return 1 + (won_a + won_b) / 2, agree


def _as_pref(value: float) -> float:
    return 1.5 if value == 0 else float(value)  # alpaca_eval writes 0 for a draw


def _side(p_model: float) -> int:
    return 0 if abs(p_model - 0.5) < 1e-9 else (1 if p_model > 0.5 else -1)


def judge_pairs(judge: Judge, pairs: list[Pair], out_dir: Path,
                progress: Callable[[str], None] | None = None) -> tuple[list[dict], CallStats]:
    """One result per pair: both verdicts, the combined preference (None when a call failed),
    and whether the orders agree (None for identical answers)."""
    calls = [c for p in pairs if not p.identical for c in p.calls()]
    verdicts, stats = judge_calls(judge, calls, out_dir, progress)
    results = []
    for pair in pairs:
        result = {"model": pair.model, "question_id": pair.question_id, "instruction": pair.instruction,
                  "model_output": pair.model_output, "reference_output": pair.reference_output,
                  "identical": pair.identical, "pref_model_first": None, "pref_reference_first": None,
                  "preference": None, "consistent": None, "n_calls": 0, "n_failed": 0}
        if pair.identical:
            result["preference"] = 1.5
        else:
            got = [verdicts.get(c) for c in pair.calls()]
            result["n_calls"] = 2
            result["n_failed"] = sum(v is None for v in got)
            if got[0]:
                result["pref_model_first"] = got[0]["preference"]
            if got[1]:
                result["pref_reference_first"] = got[1]["preference"]
            if all(got):
                result["preference"], result["consistent"] = combine(got[0]["preference"], got[1]["preference"])
        results.append(result)
    return results, stats


# ---------------------------------------------------------------------------------------------
# Talking to the judges


def make_messages(call: Call, template: str) -> list[dict]:
    """alpaca_eval's chat messages for one call (placeholders filled like its make_prompts:
    the first occurrence of each, so braces in the answers are left alone)."""
    from alpaca_eval.utils import prompt_to_chatml

    values = {"instruction": call.instruction, "output_1": call.first, "output_2": call.second}
    prompt = template
    for name in dict.fromkeys(re.findall(r"{([^ \s]+?)}", template)):
        if name in values:
            prompt = prompt.replace("{" + name + "}", values[name], 1)
    return prompt_to_chatml(prompt)


def parse_logprob_reply(reply: dict) -> dict:
    """A chat completion with logprobs -> {"preference", "soft"}, or {"error"}."""
    try:
        choice = reply["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        content = ((choice.get("logprobs") or {}).get("content") or [{}])
        top = content[0].get("top_logprobs") or []
    except (KeyError, IndexError, TypeError, AttributeError):
        return {"error": f"unexpected reply: {json.dumps(reply)[:200]}"}
    logprobs = {t.get("token"): t.get("logprob") for t in top if t.get("token") in ("m", "M")}
    if logprobs:
        lm, lM = logprobs.get("m", -math.inf), logprobs.get("M", -math.inf)
        p_m = 1 / (1 + math.exp(min(lM - lm, 700))) if lm > -math.inf else 0.0  # P(first better); no overflow
        return {"preference": 2 - p_m, "soft": True, "logprobs": logprobs}
    if text.strip() in ("m", "M"):  # neither in the top logprobs: the (grammar-forced) token itself
        return {"preference": 1.0 if text.strip() == "m" else 2.0, "soft": False, "text": text.strip()}
    return {"error": f"reply is neither 'm' nor 'M': {text[:40]!r}"}


def _post(url: str, body: dict, timeout: float, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.load(reply)


def _describe(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        try:
            body = err.read().decode("utf-8", "replace")
        except OSError:
            body = ""
        return f"HTTP {err.code}: {body.strip()[:200] or err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot reach the judge: {err.reason}"
    return f"{type(err).__name__}: {err}"


class _session:
    """Context manager yielding ask(calls) -> iterator of (call, result dict)."""

    def __init__(self, judge: Judge, out_dir: Path):
        self.judge, self.out_dir = judge, out_dir
        self.server = None

    def __enter__(self):
        judge = self.judge
        if judge.kind == "llama.cpp":
            from judge_server import judge_server

            self.server = judge_server(judge.spec, self.out_dir / "judge" / "server.log")
            try:
                base_url = self.server.__enter__()
            except (FileNotFoundError, ValueError, RuntimeError) as err:
                raise JudgeError(f"judge '{judge.name}': {err}") from None
            return lambda calls: self._ask_openai(calls, base_url, None, judge.name, local=True)
        if judge.kind == "openai":
            key = os.environ.get(judge.api_key_env) if judge.api_key_env else None
            return lambda calls: self._ask_openai(calls, judge.base_url, key, judge.api_model, local=False)
        return self._ask_alpaca_eval

    def __exit__(self, *exc):
        if self.server is not None:
            return self.server.__exit__(*exc)
        return False

    def _ask_openai(self, calls, base_url, api_key, model, local) -> Iterator[tuple[Call, dict]]:
        template = prompt_template()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        for call in calls:
            started = time.monotonic()
            try:
                truncated = False
                if local:
                    call_shown, truncated = self._fit_context(call, template, base_url)
                else:
                    call_shown = call
                body = {"model": model, "messages": make_messages(call_shown, template), "max_tokens": 1,
                        "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
                if local:
                    body["grammar"] = GRAMMAR  # llama.cpp: the one token is m or M, nothing else
                reply = _post(f"{base_url}/chat/completions", body,
                              LOCAL_TIMEOUT_S if local else API_TIMEOUT_S, headers)
                result = parse_logprob_reply(reply)
                if truncated and "error" not in result:
                    result["truncated"] = True
            except (OSError, ValueError) as err:  # HTTP errors, timeouts, bad JSON
                result = {"error": _describe(err)}
            result["seconds"] = round(time.monotonic() - started, 3)
            yield call, result

    def _fit_context(self, call: Call, template: str, base_url: str) -> tuple[Call, bool]:
        """Cut both answers (the longer more) until the prompt fits the judge's n_ctx."""
        n_ctx = self.judge.spec.n_ctx
        budget = n_ctx - 64  # room for the chat template's own tokens and the answer token
        text = json.dumps(make_messages(call, template), ensure_ascii=False)
        if len(text.encode("utf-8")) < budget:  # a token is at least one byte: it surely fits
            return call, False
        count_url = base_url.rsplit("/v1", 1)[0] + "/extras/tokenize/count"

        def count(c: Call) -> int:
            joined = "\n".join(m["content"] for m in make_messages(c, template))
            return _post(count_url, {"input": joined}, LOCAL_TIMEOUT_S)["count"]

        n = count(call)
        if n <= budget:
            return call, False
        fixed = count(Call(call.instruction, "", ""))
        scale = 1.0
        for _ in range(8):
            scale *= max(budget - fixed, 16) / max(n - fixed, 1) * 0.95
            shown = Call(call.instruction, _cut(call.first, scale), _cut(call.second, scale))
            n = count(shown)
            if n <= budget:
                return shown, True
        raise ValueError(f"the question alone does not fit the judge's n_ctx={n_ctx}; raise n_ctx of judge '{self.judge.name}'")

    def _ask_alpaca_eval(self, calls) -> Iterator[tuple[Call, dict]]:
        import logging
        import tempfile

        import yaml
        from alpaca_eval.annotators import PairwiseAnnotator

        logging.getLogger().setLevel(logging.ERROR)  # alpaca_eval logs every step
        warnings.filterwarnings("ignore")
        with tempfile.TemporaryDirectory(prefix="llmeval-judge-") as folder:  # private (0700), removed after
            config = Path(folder) / "annotator" / "configs.yaml"
            config.parent.mkdir()
            config.write_text(yaml.safe_dump(self.judge.annotator_config, allow_unicode=True), encoding="utf-8")
            annotator = PairwiseAnnotator(annotators_config=str(config), caching_path=None,
                                          is_avoid_reannotations=False, is_store_missing_annotations=False)
        chunk = 4  # alpaca_eval answers a whole batch at once: small batches lose little on a crash
        for start in range(0, len(calls), chunk):
            batch = calls[start:start + chunk]
            started = time.monotonic()
            try:
                rows = annotator.annotate_pairs([
                    {"instruction": c.instruction, "output_1": c.first, "output_2": c.second} for c in batch])
                found = {(r["instruction"], r["output_1"], r["output_2"]): r.get("preference") for r in rows}
            except Exception as err:  # alpaca_eval and its API clients raise anything
                found, error = {}, _describe(err)
            else:
                error = "no verdict (the annotator's reply did not parse)"
            seconds = round((time.monotonic() - started) / len(batch), 3)
            for call in batch:
                pref = found.get((call.instruction, call.first, call.second))
                if pref is not None and not (isinstance(pref, float) and math.isnan(pref)):
                    pref = _as_pref(float(pref))
                if _valid_preference(pref):
                    yield call, {"preference": pref, "soft": pref not in (1.0, 1.5, 2.0), "seconds": seconds}
                else:
                    yield call, {"error": error, "seconds": seconds}


def _cut(text: str, scale: float) -> str:
    keep = int(len(text) * min(scale, 1.0))
    if keep >= len(text):
        return text
    return text[:max(keep - len(CUT_MARK), 0)] + CUT_MARK


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
