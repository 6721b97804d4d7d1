"""A custom model that misbehaves on purpose (`[models.fault_drill]`, backend = "custom"), for the
fault tests and for seeing the failure handling yourself. Each question is answered as its text asks:
  RETURN_STR            the function returns one string instead of a list of answers
  RAISE_INTERRUPT       raises KeyboardInterrupt          RAISE_EXIT   raises SystemExit(3)
  HANG                  never returns (sleeps)            SLEEP_3      returns after 3 s
  SURROGATE             an answer with a lone surrogate   HUGE         a 50 MB answer
anything else is echoed. Not a model: it shows what a run does when a function goes wrong.
"""
import time

from backends.custom_backend import register_llm_infer


@register_llm_infer("fault_drill")
def fault_drill(questions: list[str]):
    if any("RETURN_STR" in q for q in questions):
        return "one string, not a list"
    if any("RAISE_INTERRUPT" in q for q in questions):
        raise KeyboardInterrupt
    if any("RAISE_EXIT" in q for q in questions):
        raise SystemExit(3)
    if any("HANG" in q for q in questions):
        while True:
            time.sleep(1)
    if any("SLEEP_3" in q for q in questions):
        time.sleep(3)
    return [{"SURROGATE": "half \ud800 a character", "HUGE": "x" * 50_000_000}.get(q, f"echo: {q}") for q in questions]
