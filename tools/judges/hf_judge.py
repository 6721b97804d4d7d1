"""A transformers judge: the same verdict as the llama.cpp judge, from the logits of `m` and `M`.

The model is loaded by the transformers backend (tools/backends/hf_backend.py: a Hugging Face
folder, or a GGUF that transformers dequantizes; its chat template or the `chat_template`
override), in this process. Each call is one forward pass over its prompt; P(first better) =
softmax over the two verdict tokens' logits at the last position (protocol logits-v2, like
llama_judge.py). Answers too long for n_ctx are cut to fit (marked `truncated`).
Does not handle: models with `requirements` (their own virtual environment) or `model_chat`;
batching or prefix sharing (one prompt at a time: use a GGUF judge for speed).
"""
from __future__ import annotations

from judges import Judge, JudgeError
from judges.prompt import fit, make_messages, prompt_template, verdict_from_logits, verdict_token_ids
from records import InputError


class HFJudge(Judge):
    kind = "transformers"

    def __init__(self, spec, identity: dict):
        if spec.requirements or spec.model_chat:
            raise InputError(f"judge '{spec.name}': a transformers judge cannot use `requirements` or "
                             "`model_chat` (it needs the logits in this process); pick another JUDGE")
        super().__init__(spec.name, identity)
        self.spec = spec
        self.model = None

    def _load(self):
        from backends.hf_backend import LocalModel

        if self.model is None:
            model = None
            try:
                model = LocalModel(self.spec)
                self.token_ids = verdict_token_ids(lambda word: model.tokenizer.encode(word, add_special_tokens=False))
            except (FileNotFoundError, ValueError, RuntimeError) as err:
                if model is not None:
                    model.close()
                raise JudgeError(f"judge '{self.name}': {err}") from None
            self.model = model
        return self.model

    def ids(self, call, template: str):
        model = self._load()
        return model.tokenizer.apply_chat_template(make_messages(call, template), add_generation_prompt=True,
                                                   return_tensors="pt", return_dict=True)

    def judge(self, calls):
        model = self._load()
        template = prompt_template()
        budget = self.spec.n_ctx
        for call in calls:
            try:
                shown, truncated = fit(call, lambda c: int(self.ids(c, template)["input_ids"].shape[1]), budget,
                                       self.name, self.spec.n_ctx)
                with model.torch.no_grad():
                    inputs = self.ids(shown, template).to(model.model.device)
                    logits = model.model(**inputs).logits[0, -1]
                lm, lM = (float(logits[t]) for t in self.token_ids)
            except (ValueError, RuntimeError) as err:
                yield call, {"error": f"{type(err).__name__}: {err}"}
                continue
            yield call, verdict_from_logits(lm, lM, truncated)

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None
