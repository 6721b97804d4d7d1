"""transformers backend: for models llama.cpp cannot run, or as a fallback.

Loads a local Hugging Face folder (or a GGUF file, which transformers dequantizes) in fp32 on
the CPU and fp16 on a GPU, formats each question with the tokenizer's chat template and decodes
one question at a time with `generate`. The output is the new tokens only.
"""
from __future__ import annotations

import time

from backends import chat_messages


class TransformersBackend:
    def __init__(self, spec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not spec.path.exists():
            raise FileNotFoundError(f"weights not found at {spec.path}; run: make models")
        self.spec = spec
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        if spec.path.is_file():  # a GGUF file: transformers dequantizes it
            folder, kwargs = str(spec.path.parent), {"gguf_file": spec.path.name}
        else:
            folder, kwargs = str(spec.path), {}
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs).to(self.device)
        self.model.eval()
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        if not self.tokenizer.chat_template:
            raise ValueError("the tokenizer has no chat template; "
                             "set chat_template in models.toml")

    def answer(self, questions: list[dict]):
        for index, question in enumerate(questions):
            yield index, self._answer_one(question)

    def _answer_one(self, question: dict) -> dict:
        started = time.perf_counter()
        try:
            ids = self.tokenizer.apply_chat_template(
                chat_messages(question, self.spec.system_prompt), add_generation_prompt=True,
                return_tensors="pt", return_dict=True,
            ).to(self.device)
            prompt_len = ids["input_ids"].shape[1]
            if prompt_len >= self.spec.n_ctx:
                return {"error": f"prompt is {prompt_len} tokens, more than n_ctx={self.spec.n_ctx}"}
            self.torch.manual_seed(self.spec.seed)
            sample = self.spec.temperature > 0
            extra = {"temperature": self.spec.temperature, "top_p": self.spec.top_p} if sample else {}
            with self.torch.no_grad():
                out = self.model.generate(
                    **ids, max_new_tokens=self.spec.max_tokens, do_sample=sample,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    stop_strings=self.spec.stop or None, tokenizer=self.tokenizer, **extra,
                )
            new_tokens = out[0][prompt_len:]
            text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        except Exception as err:  # one question's failure is recorded, the run goes on
            return {"error": f"{type(err).__name__}: {err}"}
        return {"output": text.strip(), "tokens": int(new_tokens.shape[0]),
                "seconds": time.perf_counter() - started}

    def close(self) -> None:
        del self.model
