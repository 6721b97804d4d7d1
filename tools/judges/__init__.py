"""Judges: a model from models.toml (or an alpaca_eval annotator) that compares two answers.

    from judges.resolve import resolve_judge
    judge = resolve_judge("smollm2_135m", registry, out_dir)
    for call, result in judge.judge(calls): ...   # result: {"preference", "soft", ...} or {"error"}

How a judge is asked; what the benchmarks ask it (MT-Bench's, AlignBench's, Arena-Hard's prompts)
lives with their boards (tools/board/graded/, tools/board/arena_hard/). A judge is resolved by
name (resolve.py) into one object (base.py: Judge, LocalJudge) with one method, `judge(calls)`,
answered by the same backends that answer questions (tools/backends/), one file per kind:
- llama_judge.py: a GGUF model (backend llama.cpp), in-process and batched: the logits of `m`
  and `M` after the prompt give P(first better) exactly (protocol logits-v2);
- hf_judge.py: a transformers model, the same way;
- api_judge.py: `backend = "openai"`: the openai package, `concurrency` calls in flight, retries
  with backoff; the top-20 logprobs of the one answer token (protocol logprob-v1), or the token
  it wrote where the endpoint gives no logprobs;
- annotator_judge.py: alpaca_eval's annotators (chatgpt_fn, weighted_alpaca_eval_gpt4_turbo,
  claude, ...) or a configs.yaml, with alpaca_eval's own concurrency;
- formats/: a local judge with `judge_format` in models.toml (Skywork-Critic, Selene, Prometheus)
  asked in the prompt format it was trained on, its label read from the logits (FormatJudge).
Labelled calls (a reply ending in `[[label]]` out of a fixed set: 1-10 ratings, Arena-Hard's
verdicts) are labels.py's: `label_calls(judge, calls, out_dir)`, answered by `judge.label(calls)`
(local judges read the label from the logits, local_labels.py). Answers are shown to every
judge without the prompt's verdict syntax or section markers (verdict_text.py). The pairwise
prompt and its parsing (logprobs, else the m/M the reply wrote) are in prompt.py; LLMBar's own
comparison prompts (make judge-check PROTOCOL=llmbar) in llmbar.py; calls, the verdict cache and
the asking loop in cache.py; pairs in both orders and their combination in pairs.py; identities
without secrets in identity.py; the labelled-call rates `make bench-judge` measured, for the
expected time on the count line, in bench_rates.py. Verdicts are
keyed by the judge's `identity` (weights hash, or API model and endpoint, or annotator config,
plus the protocol): bump a protocol when its verdicts change.
Not handled: several judges voting (a caller may resolve several), custom-function judges.
This file imports nothing of the package: import what you use from its module.
"""
import warnings

# alpaca_eval imports pkg_resources, which warns on every run: not our reader's concern.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
