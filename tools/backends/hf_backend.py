"""transformers backend: for models llama.cpp cannot run (ChatGLM-6B), or as a fallback.

Loads a Hugging Face folder (a local `path`, or `hf_repo` from the cache; a GGUF file works too,
transformers dequantizes it) in bf16 (fp16 where the GPU has no bf16, or the model was saved in
fp16) on a GPU and fp32 on the CPU; `quant` = nf4 / int8 / int4 quantizes it on a GPU
(hf_quant.py: bitsandbytes, or the model's own quantize(bits) for ChatGLM-6B). A repo's own Python
code runs only with `trust_remote_code = true`.

Questions are answered `parallel` at a time in one `generate` call (0: as many as the free memory
holds beside the weights, hf_fit.py; a CPU: a quarter of the free RAM; at most 32), longest prompt
first, left-padded with the attention mask (hf_batch.py); each batch's answers are handed back as
soon as it is done. A batch that runs out of memory is halved, down to one question, said once.
Greedy answers equal each question's alone (the tests check it in fp32 on the CPU): the
repetition penalty ignores the padding, and the output is the new tokens only, cut at the end
token and at `stop` strings. Each question is formatted with the tokenizer's chat template (or
`chat_template`), earlier turns ("history") included, and tokenized by chat_tokens.py (the
template's markup as control tokens, the messages as plain text); questions whose own
"generation" settings (temperature, max_tokens, top_p) differ go in separate batches. With
`model_chat = true` ChatGLM-6B's prompts are built and tokenized as its chat() does (its own
behaviour: content not escaped) and batched through generate with its tokenizer's own left
padding (equal to chat()'s answers); another model's chat() answers one question at a
time. Sampled answers depend on which questions share a batch (parallel = 1 for one at a time).

Remote code written for an older transformers often breaks under a new one. A model that declares
`requirements` (a pinned requirements file) therefore runs in its own virtual environment,
models/NAME/.venv (made by `make download`): this file is started there as a worker process
(`--worker`) that reads the settings and questions as JSON lines on stdin and writes one JSON line
per answer on stdout, batching the same way. Without it, remote code that fails to load says
which transformers it was written for instead of answering with garbage.
Not handled: multi-GPU sharding; dropping a finished row from a running batch (generate keeps it
until the batch's last answer ends); stop strings mark a row done only with transformers 4.39+
(older ones cut the text after generating).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

if __package__ in (None, ""):  # started as a worker script: make `backends` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.messages import GENERATION_KEYS, chat_messages, generation  # noqa: E402
from backends import hf_batch, hf_fit, hf_quant  # noqa: E402

DEFAULT_PARALLEL = 8  # automatic N without a config.json to size from (a GGUF file)
# What the worker needs of a ModelSpec (paths as strings on the wire).
SPEC_FIELDS = ("name", "path", "max_tokens", "temperature", "top_p", "seed", "stop", "n_ctx",
               "chat_template", "system_prompt", "quant", "trust_remote_code", "model_chat", "requirements",
               "repetition_penalty", "top_k", "min_p", "parallel")


class TransformersBackend:
    """Runs in this process, or hands everything to a worker in the model's own environment."""

    def __init__(self, spec):
        if spec.venv and Path(sys.prefix).resolve() != spec.venv.resolve():
            self.impl = WorkerClient(spec)
        else:
            self.impl = LocalModel(spec)

    def answer(self, questions: list[dict]):
        return self.impl.answer(questions)

    def close(self) -> None:
        self.impl.close()


class LocalModel:
    def __init__(self, spec, ignore_eos: bool = False):
        import torch
        import transformers

        path = Path(spec.path)
        if not path.exists():
            raise FileNotFoundError(f"weights not found at {path}; run: make download MODELS={spec.name} "
                                    "(Hub weights) or fix 'path' in models.toml")
        self.spec, self.torch, self.ignore_eos = spec, torch, ignore_eos
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs = {"trust_remote_code": bool(spec.trust_remote_code)}
        if path.is_file():  # a GGUF file: transformers dequantizes it
            folder, kwargs["gguf_file"] = str(path.parent), path.name
        else:
            folder = str(path)
        # GPU: the half precision the model was saved in (ChatGLM-6B: fp16), else bf16 where the GPU
        # has it; CPU: fp32.
        dtype = torch.float32
        if self.device == "cuda":
            saved = hf_quant.config_value(folder, "dtype") or hf_quant.config_value(folder, "torch_dtype")
            use_fp16 = saved == "float16" or not torch.cuda.is_bf16_supported()
            dtype = torch.float16 if use_fp16 else torch.bfloat16
        # transformers 5 calls it `dtype`; the 4.x of old remote code `torch_dtype`.
        major = int(transformers.__version__.split(".")[0])
        model_kwargs = {("dtype" if major >= 5 else "torch_dtype"): dtype, **kwargs}
        own_bits = hf_quant.plan(spec, folder, transformers, self.device, model_kwargs)
        hf_quant.warn_old_remote_code(spec, folder, transformers.__version__)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
            auto = transformers.AutoModel if spec.model_chat else transformers.AutoModelForCausalLM
            self.model = auto.from_pretrained(folder, **model_kwargs)
        except Exception as err:
            if spec.trust_remote_code:
                fix = (f"check the pins in {spec.requirements}" if spec.requirements else
                       "it was probably written for an older transformers: give the model `requirements` "
                       "with a pinned one (see envs/)")
                raise RuntimeError(f"the repo's own code failed to load under transformers "
                                   f"{transformers.__version__} ({type(err).__name__}: {one_line(err)}); {fix}") from None
            raise
        if own_bits:  # the model's own documented way: .half().quantize(bits).cuda()
            self.model = self.model.half().quantize(own_bits).cuda()
        elif self.device == "cpu" and self.model.dtype != torch.float32:  # ChatGLM-6B's code makes fp16
            self.model = self.model.float()  # layers whatever dtype is asked (its README: .float() on a CPU)
        elif "quantization_config" not in model_kwargs:
            self.model = self.model.to(self.device)
        self.model.eval()
        if spec.model_chat and not callable(getattr(self.model, "chat", None)):
            raise ValueError("model_chat = true, but this model has no chat() method; remove it from models.toml")
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        if not spec.model_chat and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; set chat_template in models.toml")
        self.chatglm = bool(spec.model_chat) and hf_batch.is_chatglm_v1(self.model, self.tokenizer)
        self.batched = not spec.model_chat or self.chatglm  # another model's chat(): one at a time
        self.eos = hf_batch.eos_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else min(self.eos, default=0)
        try:
            self.shape = hf_fit.HFShape.from_folder(Path(folder), spec.name)
        except (hf_fit.ShapeError, OSError, ValueError):
            self.shape = None  # a GGUF, an unknown family: DEFAULT_PARALLEL when automatic
        self.cap = None  # the most questions per batch after a memory failure
        self.chat = None  # chat_tokens' tokenizer, made on first use

    def answer(self, questions: list[dict]):
        """(index, result) per question, a batch's results as soon as that batch is done."""
        prompts = []
        for index, question in enumerate(questions):
            try:
                text, ids = self._prompt(question)
            except Exception as err:  # a template that fails on one question fails that question
                yield index, {"error": f"{type(err).__name__}: {one_line(err)}"}
                continue
            if len(ids) >= self.spec.n_ctx:
                yield index, {"error": f"prompt is {len(ids)} tokens, more than n_ctx={self.spec.n_ctx}"}
                continue
            prompts.append((index, text, ids))
        if not self.batched:
            for index, _, _ in prompts:
                yield index, self._answer_with_chat(questions[index])
            return
        groups: dict[tuple, list] = {}  # questions of equal generation settings share batches
        for prompt in prompts:
            gen = generation(self.spec, questions[prompt[0]])
            groups.setdefault(tuple(gen[k] for k in GENERATION_KEYS), []).append(prompt)
        for values, group in groups.items():
            yield from self._batches(group, dict(zip(GENERATION_KEYS, values)))

    def _batches(self, prompts: list, gen: dict):
        # Longest first: a batch too big for the memory fails at the start, and neighbours of
        # similar length waste little padding.
        prompts.sort(key=lambda p: len(p[2]), reverse=True)
        pos = 0
        while pos < len(prompts):
            batch = prompts[pos:pos + self._batch_size(prompts[pos:], gen)]
            started = time.perf_counter()
            try:
                results = self._run(batch, gen)
            except Exception as err:
                if hf_batch.is_memory_error(err) and len(batch) > 1:
                    del err  # its traceback holds the failed batch's tensors
                    if self.device == "cuda":
                        self.torch.cuda.empty_cache()
                    self._halve(len(batch))
                    continue
                results = self._alone(batch, gen, err)
            seconds = time.perf_counter() - started
            for (index, _, _), result in zip(batch, results):
                yield index, result if "error" in result else {**result, "seconds": seconds}
            pos += len(batch)

    def _prompt(self, question: dict) -> tuple[str | None, list[int]]:
        """(text, token ids) of the question as the model sees it (the text for ChatGLM-6B)."""
        messages = chat_messages(question, self.spec.system_prompt)
        if self.chatglm:
            text = hf_batch.chatglm_prompt(messages)
            return text, list(self.tokenizer(text)["input_ids"])
        if self.spec.model_chat:  # another model's chat() builds its own prompt
            return None, []
        if self.chat is None:  # the messages as plain text, only the template's markup as control tokens
            from lib.chat_tokens import for_hf
            self.chat = for_hf(self.tokenizer)
        return None, list(self.chat.ids(messages))

    def _batch_size(self, rest: list, gen: dict) -> int:
        """N for the next batch: models.toml's parallel, else what the memory holds for the
        longest of them; never over self.cap (after a memory failure)."""
        n = self.spec.parallel or self._auto_n(len(rest[0][2]), gen["max_tokens"])
        return max(1, min(n, self.cap or n, len(rest)))

    def _auto_n(self, prompt_len: int, max_tokens: int) -> int:
        if self.shape is None:
            return DEFAULT_PARALLEL
        if self.device == "cuda":
            free = self.torch.cuda.mem_get_info()[0] - hf_fit.RESERVE
        else:  # a CPU: a quarter of the available RAM, as the llama.cpp backend on a CPU build
            free = hf_fit.mem_available() // 4
        per_seq = self.shape.seq_bytes(prompt_len, max_tokens, self.model.dtype.itemsize)
        return max(1, min(hf_fit.MAX_PARALLEL, free // max(per_seq, 1)))

    def _halve(self, size: int) -> None:
        if self.cap is None:
            print(f"note: model '{self.spec.name}': {size} questions in one generate ran out of memory; "
                  "halving the batch (down to one) for the rest of this run", file=sys.stderr)
        self.cap = max(1, size // 2)

    def _alone(self, batch: list, gen: dict, err: Exception) -> list[dict]:
        """A batch that failed (not for memory): each question alone, so a bad one fails by itself."""
        if len(batch) == 1:
            return [{"error": f"{type(err).__name__}: {one_line(err)}"}]
        results = []
        for item in batch:
            try:
                results.extend(self._run([item], gen))
            except Exception as one:
                results.append({"error": f"{type(one).__name__}: {one_line(one)}"})
        return results

    def _run(self, batch: list, gen: dict) -> list[dict]:
        """One generate call for the batch, with its generation settings."""
        spec, torch, tok = self.spec, self.torch, self.tokenizer
        rows = [ids for _, _, ids in batch]
        budget = hf_batch.kv_budget()
        if budget is not None and self.shape is not None:
            need = (len(rows) * self.shape.kv_bytes_per_token(self.model.dtype.itemsize)
                    * (max(map(len, rows)) + gen["max_tokens"]))
            if need > budget:
                raise hf_batch.BudgetExceeded(f"{need} bytes of KV cache, over LLMEVAL_KV_BUDGET={budget}")
        torch.manual_seed(spec.seed)
        if self.chatglm:  # its tokenizer pads on the left and adds its 2D position ids and mask
            inputs = tok([text for _, text, _ in batch], padding=True, return_tensors="pt").to(self.model.device)
        else:
            inputs, _ = hf_batch.left_pad(rows, self.pad, self.model.device)
        width = inputs["input_ids"].shape[1]
        kwargs = self._sampling(gen)
        processors = []
        if kwargs.pop("repetition_penalty", None):
            processors.append(hf_batch.repetition_penalty(spec.repetition_penalty, [width - len(r) for r in rows]))
        if self.chatglm:  # chat()'s own guard against NaN / inf scores, and chat()'s max_length
            processors.append(sys.modules[type(self.model).__module__].InvalidScoreLogitsProcessor())
            kwargs["max_length"] = spec.n_ctx
        elif spec.stop and supports_stop_strings():
            kwargs.update(stop_strings=spec.stop, tokenizer=tok)
        if self.ignore_eos:  # benchmarks: every answer makes max_tokens
            kwargs["min_new_tokens"] = gen["max_tokens"]
        if processors:
            from transformers import LogitsProcessorList
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=gen["max_tokens"], pad_token_id=self.pad, **kwargs)
        results = []
        for row in out.tolist():
            new = hf_batch.cut(row, width, self.eos, self.pad)
            if self.chatglm:
                text = self.model.process_response(tok.decode(new))
            else:
                text = tok.decode(new, skip_special_tokens=True)
            results.append({"output": hf_batch.cut_at_stops(text, spec.stop).strip(), "tokens": len(new)})
        return results

    def _answer_with_chat(self, question: dict) -> dict:
        """A model's own chat() (not ChatGLM-6B's format): one question per call."""
        started = time.perf_counter()
        self.torch.manual_seed(self.spec.seed)
        query, history = hf_batch.chat_turns(chat_messages(question, self.spec.system_prompt))
        gen = generation(self.spec, question)
        try:
            with self.torch.no_grad():
                response, _ = self.model.chat(self.tokenizer, query, history=history, max_length=self.spec.n_ctx,
                                              max_new_tokens=gen["max_tokens"], **self._sampling(gen))
        except Exception as err:  # one question's failure is recorded, the run goes on
            return {"error": f"{type(err).__name__}: {one_line(err)}"}
        response = hf_batch.cut_at_stops(response, self.spec.stop)
        return {"output": response.strip(), "tokens": len(self.tokenizer.encode(response, add_special_tokens=False)),
                "seconds": time.perf_counter() - started}

    def _sampling(self, gen: dict) -> dict:
        """generate()'s arguments: the question's temperature and top_p (`gen`); repetition_penalty
        applies greedy or sampled; top_k and min_p only when sampling, and only when models.toml
        sets them (else generate's own defaults; min_p needs transformers 4.39+)."""
        spec = self.spec
        sample = gen["temperature"] > 0
        kwargs = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=gen["temperature"], top_p=gen["top_p"])
            kwargs.update({k: getattr(spec, k) for k in ("top_k", "min_p") if getattr(spec, k, None) is not None})
        if getattr(spec, "repetition_penalty", 1.0) != 1.0:
            kwargs["repetition_penalty"] = spec.repetition_penalty
        return kwargs

    def close(self) -> None:
        del self.model
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


def supports_stop_strings() -> bool:
    """generate(stop_strings=...) marks each row done at its stop string (transformers 4.39+)."""
    import re

    import transformers
    return tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2]) >= (4, 39)


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


class WorkerClient:
    """This backend in another Python (the model's own .venv), spoken to in JSON lines."""

    def __init__(self, spec):
        python = spec.venv / "bin" / "python"
        if not (spec.venv / "requirements.done").is_file():
            raise FileNotFoundError(f"its own environment {spec.venv} is not installed; "
                                    f"run online: make download MODELS={spec.name}")
        self.proc = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
        wire = {k: (str(v) if isinstance(v, Path) else v) for k, v in
                ((k, getattr(spec, k)) for k in SPEC_FIELDS)}
        self._send(wire)
        reply = self._read()
        if "fatal" in reply:
            self.close()
            raise RuntimeError(f"in {spec.venv}: {reply['fatal']}")

    def _send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the model's worker process exited with code {code} (its messages are above)")
        return json.loads(line)

    def answer(self, questions: list[dict]):
        self._send({"questions": questions})
        while "done" not in (reply := self._read()):
            yield reply["index"], reply["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker() -> int:
    """The worker's side: settings line, then question batches; stray prints go to stderr."""
    import logging

    # transformers 4.27 (ChatGLM-6B's pin) logs "Both max_new_tokens and max_length" with a stray
    # argument, which logging reports as a "Logging error" stack on every chat() answer.
    logging.raiseExceptions = False
    wire = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the protocol keeps the real stdout
    os.dup2(2, 1)  # and the model's own prints land on stderr
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        wire.write(json.dumps(message, ensure_ascii=False) + "\n")
        wire.flush()

    spec = SimpleNamespace(**json.loads(sys.stdin.readline()))
    try:
        model = LocalModel(spec)
    except Exception as err:
        send({"fatal": f"{type(err).__name__}: {one_line(err)}"})
        return 1
    send({"ready": True})
    for line in sys.stdin:
        for index, result in model.answer(json.loads(line)["questions"]):
            send({"index": index, "result": result})
        send({"done": True})
    model.close()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    sys.exit(worker())
