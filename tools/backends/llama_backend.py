"""llama.cpp backend (llama-cpp-python) for GGUF weights.

The prompt is the model's own chat template from the GGUF metadata (or the `chat_template`
override) rendered with the same Jinja2 formatter llama-cpp-python uses, then tokenized with
special tokens. All layers go to the GPU when the build has CUDA (`n_gpu_layers = -1`); a CPU
build ignores that. The output is the generated text only, stripped of surrounding whitespace.
"""
from __future__ import annotations

import time

from backends import chat_messages


class LlamaBackend:
    def __init__(self, spec):
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not spec.path.is_file():
            raise FileNotFoundError(f"weights not found at {spec.path}; run: make models")
        self.spec = spec
        self.llm = llama_cpp.Llama(
            model_path=str(spec.path), n_ctx=spec.n_ctx, n_gpu_layers=spec.n_gpu_layers,
            seed=spec.seed, verbose=False,
        )
        template = spec.chat_template or self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError("the GGUF has no chat template; "
                             "set chat_template in models.toml")
        model = self.llm._model
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
        )

    def prompt_tokens(self, question: dict) -> list[int]:
        rendered = self.formatter(messages=chat_messages(question, self.spec.system_prompt))
        # The template writes its own BOS and special tokens, so no extra BOS here.
        return self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=False, special=True)

    def answer(self, questions: list[dict]):
        for index, question in enumerate(questions):
            yield index, self._answer_one(question)

    def _answer_one(self, question: dict) -> dict:
        started = time.perf_counter()
        try:
            tokens = self.prompt_tokens(question)
            if len(tokens) >= self.spec.n_ctx:
                return {"error": f"prompt is {len(tokens)} tokens, more than n_ctx={self.spec.n_ctx}"}
            result = self.llm.create_completion(
                prompt=tokens, max_tokens=self.spec.max_tokens, temperature=self.spec.temperature,
                top_p=self.spec.top_p, seed=self.spec.seed, stop=self.spec.stop or None,
            )
        except Exception as err:  # one question's failure is recorded, the run goes on
            return {"error": f"{type(err).__name__}: {err}"}
        return {
            "output": result["choices"][0]["text"].strip(),
            "tokens": result["usage"]["completion_tokens"],
            "seconds": time.perf_counter() - started,
        }

    def close(self) -> None:
        self.llm.close()
