"""The judges' base classes: Judge (name, kind, identity, `judge(calls)`) and LocalJudge (a model
loaded in this process on first use, with the token ids of the two verdict words).

The kinds subclass them (llama_judge.py, hf_judge.py: LocalJudge; api_judge.py,
annotator_judge.py: Judge); resolve.py picks the kind. Not handled here: how a kind asks its model.
"""
from __future__ import annotations

import json
from typing import Iterator

from judges.cache import Call, JudgeError
from judges.identity import sha256_text
from judges.prompt import verdict_token_ids

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
    verdict_words = True  # False: asked in a judge format (judges/formats/), `m`/`M` never read

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
                # m and M: the board's pairwise prompt; a judge asked in its own format reads other labels
                try:
                    self.token_ids = verdict_token_ids(encode) if self.verdict_words else []
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
