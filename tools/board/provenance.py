"""What the board's answers were made with, for manifest.json, and the warnings about them.

    entries, warnings = provenance(registry, outputs, reference, unpaired, out_dir)

Each model's entry takes its settings from the answers themselves: their `settings_id`, looked up in
OUT/cache/NAME.settings.json (tools/lib/settings_log.py, written by infer), not from models.toml as it
is now. The warnings (shown on the board, printed by make board, kept in the manifest) name the
counts: models whose models.toml entry (or weights) changed since they answered, model answers
left out because the reference has no answer to their question, and ranked generators that
models.toml does not declare (answers from an output.json made elsewhere, or by an older models.toml).
Does not handle: answers from another OUT (their settings were recorded there).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lib.hashes import file_sha256, hash_cache
from lib.settings_log import recorded_settings


def safe_settings(raw: dict) -> dict:
    """A models.toml entry without anything that could be a secret (API keys live in the
    environment; URLs lose any user:password part)."""
    from judges.identity import scrub

    return scrub(raw)


def model_entry(registry, name: str, out_dir: Path, answers: list[dict]) -> tuple[dict, str | None]:
    """(manifest entry of one model, a warning when models.toml changed since it answered)."""
    entry: dict = {"n_answers": len(answers),
                   "answer_seconds": round(sum(float(r.get("seconds") or 0) for r in answers), 2),
                   "answer_tokens": sum(int(r.get("tokens") or 0) for r in answers)}
    ids = Counter(r["settings_id"] for r in answers if isinstance(r.get("settings_id"), str))
    recorded = recorded_settings(out_dir, name)
    if ids:
        entry["settings_id"] = ids.most_common(1)[0][0] if len(ids) == 1 else dict(ids)
        made = [recorded[i] for i in ids if isinstance(recorded.get(i), dict)]
        settings = {i: safe_settings(recorded[i]["settings"]) if isinstance(recorded.get(i), dict) else None
                    for i in ids}
        entry["settings"] = next(iter(settings.values())) if len(ids) == 1 else settings
        entry["settings_from"] = "the answers' settings_id (OUT/cache/NAME.settings.json)" if made else \
            "unknown: answered before settings were recorded"
    # A set's per-question settings (MT-Bench's per-category temperatures): which were used, how often.
    used = Counter(json.dumps({**r["generation"], **({"from_model": r["generation_from_model"]}
                                                     if r.get("generation_from_model") else {})}, sort_keys=True)
                   for r in answers if r.get("generation"))
    if used:
        entry["generation"] = [{**json.loads(k), "n_answers": n} for k, n in sorted(used.items())]
    spec = registry.models.get(name)
    if spec is None:
        entry["note"] = "not declared in models.toml"
        return entry, None
    entry["backend"] = spec.backend
    if spec.path is not None:
        entry["path"] = str(spec.path)
        if Path(spec.path).is_file():
            entry["weights_sha256"] = file_sha256(Path(spec.path), hash_cache(out_dir))
    now = spec.settings_id(hash_cache(out_dir))
    # Answers made with a question's own settings have ids of their own: compare the others only.
    plain = Counter(r["settings_id"] for r in answers if isinstance(r.get("settings_id"), str) and not r.get("generation"))
    if plain and now not in plain:
        ids = plain
        entry["settings_now"] = {"settings_id": now, "settings": safe_settings(spec.raw)}
        return entry, (f"models.toml or the weights of '{name}' changed since it answered: its {sum(ids.values())} "
                       f"answers were made with settings {', '.join(sorted(ids))}, the entry now gives {now}; "
                       "make infer answers again with the new settings")
    return entry, None


def provenance(registry, outputs: list[dict], reference: list[dict], unpaired: Counter,
               out_dir: Path) -> tuple[dict, list[str]]:
    """({model: manifest entry}, warnings), models in the order they come."""
    names = list(dict.fromkeys([*(r["generator"] for r in outputs), *(r["generator"] for r in reference)]))
    entries, warnings = {}, []
    for name in names:
        answers = [r for r in outputs if r["generator"] == name] or [r for r in reference if r["generator"] == name]
        entries[name], changed = model_entry(registry, name, out_dir, answers)
        if changed:
            warnings.append(changed)
    if unpaired:
        each = ", ".join(f"{n} of '{m}'" for m, n in unpaired.items())
        warnings.append(f"{sum(unpaired.values())} model answers have no reference answer to their question and "
                        f"are left out ({each}): make reference answers the same QUESTIONS")
    # The ranked models: a set's own reference (gpt4_1106_preview, gpt-4-0314) is no model of yours.
    undeclared = [n for n in dict.fromkeys(r["generator"] for r in outputs) if n not in registry.models]
    if undeclared:
        warnings.append(f"{len(undeclared)} ranked models are not in {registry.source}: "
                        f"{', '.join(undeclared)} (their answers are taken as output.json has them)")
    return entries, warnings
