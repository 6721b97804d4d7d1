"""transformers backend: for models llama.cpp cannot run (ChatGLM-6B), or as a fallback.

Loads a Hugging Face folder (a local `path`, or `hf_repo` from the cache; a GGUF file works too,
transformers dequantizes it) in bf16 (fp16 where the GPU has no bf16) on a GPU, 4-bit NF4 with
bitsandbytes when `quant = "nf4"` (GPU only; bitsandbytes is not installed by default), and fp32 on
the CPU. Each question is formatted with the tokenizer's chat template (or `chat_template`),
tokenized by chat_tokens.py (the template's markup as control tokens, the question as plain text),
and decoded alone with `generate`; the output is the new tokens only. With `model_chat = true` the
model's own chat() method answers instead (ChatGLM-6B brings one). A repo's own Python code runs
only with `trust_remote_code = true`.

Remote code written for an older transformers often breaks under a new one. A model that declares
`requirements` (a pinned requirements file) therefore runs in its own virtual environment,
models/NAME/.venv (made by `make download`): this file is started there as a worker process
(`--worker`) that reads the settings and questions as JSON lines on stdin and writes one JSON line
per answer on stdout. Without it, remote code that fails to load says which transformers it was
written for instead of answering with garbage.
Not handled: batching several questions in one generate call, multi-GPU sharding.
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

from backends import chat_messages, user_message  # noqa: E402

# What the worker needs of a ModelSpec (paths as strings on the wire).
SPEC_FIELDS = ("name", "path", "max_tokens", "temperature", "top_p", "seed", "stop", "n_ctx",
               "chat_template", "system_prompt", "quant", "trust_remote_code", "model_chat", "requirements",
               "repetition_penalty", "top_k", "min_p")


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
    def __init__(self, spec):
        import torch
        import transformers

        path = Path(spec.path)
        if not path.exists():
            raise FileNotFoundError(f"weights not found at {path}; run: make download MODELS={spec.name} "
                                    "(Hub weights) or fix 'path' in models.toml")
        self.spec, self.torch = spec, torch
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
            saved = config_value(folder, "dtype") or config_value(folder, "torch_dtype")
            use_fp16 = saved == "float16" or not torch.cuda.is_bf16_supported()
            dtype = torch.float16 if use_fp16 else torch.bfloat16
        # transformers 5 calls it `dtype`; the 4.x of old remote code `torch_dtype`.
        major = int(transformers.__version__.split(".")[0])
        model_kwargs = {("dtype" if major >= 5 else "torch_dtype"): dtype, **kwargs}
        if spec.quant == "nf4":
            model_kwargs["quantization_config"] = nf4_config(transformers, dtype, self.device)
            model_kwargs["device_map"] = {"": 0}
        warn_old_remote_code(spec, folder, transformers.__version__)
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
        if spec.quant != "nf4":
            self.model = self.model.to(self.device)
        self.model.eval()
        if spec.model_chat and not callable(getattr(self.model, "chat", None)):
            raise ValueError("model_chat = true, but this model has no chat() method; remove it from models.toml")
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        if not spec.model_chat and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; set chat_template in models.toml")

    def answer(self, questions: list[dict]):
        for index, question in enumerate(questions):
            yield index, self._answer_one(question)

    def _answer_one(self, question: dict) -> dict:
        started = time.perf_counter()
        self.torch.manual_seed(self.spec.seed)
        try:
            with self.torch.no_grad():
                text, tokens = self._chat(question) if self.spec.model_chat else self._generate(question)
        except Exception as err:  # one question's failure is recorded, the run goes on
            return {"error": f"{type(err).__name__}: {one_line(err)}"}
        if isinstance(text, dict):  # an error found before generating
            return text
        return {"output": text.strip(), "tokens": tokens, "seconds": time.perf_counter() - started}

    def _sampling(self) -> dict:
        """generate()'s arguments: repetition_penalty applies greedy or sampled; top_k and min_p
        only when sampling, and only when models.toml sets them (else generate's own defaults;
        min_p needs transformers 4.39+)."""
        spec = self.spec
        sample = spec.temperature > 0
        kwargs = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=spec.temperature, top_p=spec.top_p)
            kwargs.update({k: getattr(spec, k) for k in ("top_k", "min_p") if getattr(spec, k, None) is not None})
        if getattr(spec, "repetition_penalty", 1.0) != 1.0:
            kwargs["repetition_penalty"] = spec.repetition_penalty
        return kwargs

    def _generate(self, question: dict):
        spec, tok = self.spec, self.tokenizer
        if getattr(self, "chat", None) is None:  # the question as plain text, only the template's markup as control tokens
            from chat_tokens import for_hf
            self.chat = for_hf(tok)
        prompt = self.torch.tensor([self.chat.ids(chat_messages(question, spec.system_prompt))], device=self.model.device)
        ids = {"input_ids": prompt, "attention_mask": self.torch.ones_like(prompt)}
        prompt_len = ids["input_ids"].shape[1]
        if prompt_len >= spec.n_ctx:
            return {"error": f"prompt is {prompt_len} tokens, more than n_ctx={spec.n_ctx}"}, 0
        out = self.model.generate(
            **ids, max_new_tokens=spec.max_tokens, **self._sampling(),
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            stop_strings=spec.stop or None, tokenizer=tok,
        )
        new_tokens = out[0][prompt_len:]
        return tok.decode(new_tokens, skip_special_tokens=True), int(new_tokens.shape[0])

    def _chat(self, question: dict):
        """The model's own chat() (ChatGLM-6B: chat(tokenizer, query, history, max_length, ...))."""
        spec = self.spec
        query = user_message(question)
        if spec.system_prompt:  # chat() has no system turn: the system prompt goes first
            query = f"{spec.system_prompt}\n\n{query}"
        response, _history = self.model.chat(self.tokenizer, query, history=[], max_length=spec.n_ctx,
                                             max_new_tokens=spec.max_tokens, **self._sampling())
        for stop in spec.stop:
            response = response.split(stop)[0]
        return response, len(self.tokenizer.encode(response, add_special_tokens=False))

    def close(self) -> None:
        del self.model
        if self.device == "cuda":
            self.torch.cuda.empty_cache()


def nf4_config(transformers, dtype, device: str):
    if device != "cuda":
        raise RuntimeError("quant = \"nf4\" (bitsandbytes 4-bit) needs an NVIDIA GPU; remove it to run in fp32 on the CPU")
    try:
        import bitsandbytes  # noqa: F401  (only checks that it is there)
    except ImportError:
        raise RuntimeError("quant = \"nf4\" needs bitsandbytes, which is not installed by default: "
                           ".venv/bin/pip install bitsandbytes==0.50.2") from None
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_compute_dtype=dtype)


def config_value(folder: str, key: str):
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def warn_old_remote_code(spec, folder: str, installed: str) -> None:
    """Remote code saved with transformers 4 that runs under 5: say so before it answers."""
    if not spec.trust_remote_code:
        return
    saved = config_value(folder, "transformers_version") or ""
    major = lambda version: int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0  # noqa: E731
    if saved and major(saved) < major(installed):
        print(f"warning: model '{spec.name}': its code was written for transformers {saved}, this is "
              f"{installed}; if it fails or its answers look wrong, give it `requirements` (see envs/)",
              file=sys.stderr)


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
