"""What each model's answers were made with: OUT/cache/NAME.settings.json, written by infer.

    record_settings(out_dir, spec, settings_id)   # infer, before answering
    recorded_settings(out_dir, name)              # the board: {settings_id: {"settings", "weights", "recorded"}}

An answer carries only its settings id (a hash); this file keeps, per id, the models.toml entry it
was made from (any base_url password masked; keys are never in models.toml) and the weights'
identity, so manifest.json can say what made the answers even after models.toml changed.
Does not handle: answers made before this file existed (the board says their settings are unknown).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lib.records import InputError, read_json, write_json_atomic
from lib.registry import redact_url


def settings_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / "cache" / f"{name}.settings.json"


def recorded_settings(out_dir: Path, name: str) -> dict:
    path = settings_path(out_dir, name)
    try:
        found = read_json(path) if path.is_file() else {}
    except InputError:  # a broken record is only a record: the manifest says "unknown"
        return {}
    return found if isinstance(found, dict) else {}


def record_settings(out_dir: Path, spec, settings_id: str, weights: str) -> None:
    """Add this settings id's entry, once (called under the model's lock)."""
    known = recorded_settings(out_dir, spec.name)
    if settings_id in known:
        return
    entry = {k: redact_url(v) if k == "base_url" else v for k, v in spec.raw.items()}
    known[settings_id] = {"settings": entry, "weights": weights,
                          "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(settings_path(out_dir, spec.name), known)
