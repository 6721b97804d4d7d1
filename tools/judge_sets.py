"""Human-labelled pair sets (data/judge_sets.toml): declared, fetched, read, sampled.

    sets = load_pair_sets()                       # {name: table}, checked
    pairs, info = read_pair_set("pandalm", limit=40)   # pairs: [{id, subset, instruction,
                                                  #   output_1, output_2, label}], label "1"/"2"/"tie"
    files = prompt_files("llmbar")                # {role: cached path} of LLMBar's prompt files

Each file is fetched by tools/data.py's `fetch` (cache, sha256 check, LLMEVAL_DATA_URL mirror,
HF_HUB_OFFLINE), so a pair set behaves exactly as a benchmark set of data/benchmarks.toml. The
label is read as its declaration says (one field, or the majority of several annotators), and a
record whose label is missing or is not one of the declared values is one InputError naming the
file and the record. LIMIT takes a sample stratified by subset and label with a fixed seed
(benchsets.stratified_sample: a smaller LIMIT's pairs are within a larger one's in each stratum).
`predictions(name, pairs)` reads a published judge's own per-pair predictions (PandaLM's files).
Not handled: multi-turn pairs (LLMBar's processing of MT-Bench keeps the first turn only).
"""
from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from pathlib import Path

from lib.benchsets import FILE_KEYS, NAME_RE, SEED, stratified_sample
from lib.records import InputError

ROOT = Path(__file__).resolve().parent.parent
JUDGE_SETS_TOML = ROOT / "data" / "judge_sets.toml"
PAIR_KEYS = {"title", "meaning", "fields", "label", "published", "files", "predictions"}
LABELS = ("1", "2", "tie")


def load_pair_sets(path: str | Path = JUDGE_SETS_TOML) -> dict[str, dict]:
    """{name: [pairs.NAME] table}, each checked; an InputError names the table and the key."""
    data = _load(path)
    sets = data.get("pairs", {})
    for name, table in sets.items():
        _check_pairs(Path(path), name, table)
    return sets


def _load(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (the human-labelled pair sets are declared there)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None
    if set(data) - {"pairs", "prompts"}:
        raise InputError(f"{path}: only [pairs.NAME] and [prompts.NAME] tables belong there")
    return data


def _check_files(where: str, files) -> None:
    if not isinstance(files, list) or not files:
        raise InputError(f"{where}: needs files = [{{ role, repo, commit, path, sha256 }}, ...]")
    for i, entry in enumerate(files, 1):
        fwhere = f"{where} file {i}"
        if not isinstance(entry, dict) or set(entry) - FILE_KEYS or not isinstance(entry.get("role"), str):
            raise InputError(f"{fwhere}: keys are {', '.join(sorted(FILE_KEYS))}, role required")
        if not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256", ""))):
            raise InputError(f"{fwhere}: sha256 must be 64 lowercase hex digits")
        pinned = all(isinstance(entry.get(k), str) for k in ("repo", "commit", "path"))
        if not pinned and not isinstance(entry.get("url"), str):
            raise InputError(f"{fwhere}: needs repo + commit + path, or url")
        if pinned and not re.fullmatch(r"[0-9a-f]{40}", entry["commit"]):
            raise InputError(f"{fwhere}: commit must be the full 40-hex-digit commit")
    roles = [e["role"] for e in files]
    if len(set(roles)) < len(roles):
        raise InputError(f"{where}: two files share a role")


def _check_values(where: str, values) -> None:
    if not isinstance(values, dict) or not values or not set(values.values()) <= set(LABELS):
        raise InputError(f"{where}: values = {{ \"value in the file\" = \"1\" | \"2\" | \"tie\" }}")


def _check_pairs(path: Path, name: str, table: dict) -> None:
    where = f"{path}: [pairs.{name}]"
    if not NAME_RE.match(name):
        raise InputError(f"{where}: a set name is letters, digits, '_' and '.'")
    if not isinstance(table, dict):
        raise InputError(f"{where}: must be a table")
    unknown = set(table) - PAIR_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(PAIR_KEYS))})")
    fields = table.get("fields")
    if (not isinstance(fields, dict) or not isinstance(fields.get("instruction"), list)
            or not all(isinstance(fields.get(k), str) for k in ("output_1", "output_2"))):
        raise InputError(f"{where}: fields = {{ instruction = [\"field\", ...], output_1 = \"field\", output_2 = \"field\" }}")
    label = table.get("label")
    if not isinstance(label, dict) or not (isinstance(label.get("field"), str) or
                                           (isinstance(label.get("fields"), list) and label.get("combine") == "majority")):
        raise InputError(f"{where}: label = {{ field = \"name\", values = {{...}} }} or "
                         "{ fields = [...], combine = \"majority\", values = {...} }")
    _check_values(f"{where} label", label.get("values"))
    _check_files(where, table.get("files"))
    roles = {e["role"] for e in table["files"]}
    if not [r for r in roles if not r.startswith("predictions:")]:
        raise InputError(f"{where}: no file of pairs (every role starts with 'predictions:')")
    for p in table.get("predictions", []):
        if not isinstance(p, dict) or p.get("role") not in roles or not all(isinstance(p.get(k), str) for k in ("judge", "field")):
            raise InputError(f"{where}: predictions = [{{ role (of a file), judge, field, values }}]")
        _check_values(f"{where} predictions {p['judge']}", p.get("values"))


def prompt_files(name: str, path: str | Path = JUDGE_SETS_TOML) -> dict[str, Path]:
    """{role: cached, sha256-checked path} of the [prompts.NAME] files (fetched when missing)."""
    from data import fetch

    table = _load(path).get("prompts", {}).get(name)
    if not isinstance(table, dict):
        raise InputError(f"{path}: no [prompts.{name}] table")
    _check_files(f"{path}: [prompts.{name}]", table.get("files"))
    return {e["role"]: fetch(f"prompts.{name}", e) for e in table["files"]}


def _records(path: Path) -> list[tuple[str, object]]:
    """(where, record) of a JSON list or a JSONL file."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return [(f"{path}: record {i}", r) for i, r in enumerate(json.loads(text), 1)]
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: not valid JSON ({err})") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError:
                raise InputError(f"{path}:{lineno}: not valid JSON") from None
    return out


def _label(where: str, record: dict, spec: dict) -> str:
    values = {str(k): v for k, v in spec["values"].items()}
    names = [spec["field"]] if "field" in spec else list(spec["fields"])
    got = []
    for field in names:
        if record.get(field) is None:
            raise InputError(f"{where}: label field {field!r} is missing")
        value = str(record[field])
        if value not in values:
            raise InputError(f"{where}: label {field} = {record[field]!r} is not one of {', '.join(values)}")
        got.append(values[value])
    if len(got) == 1:
        return got[0]
    (top, n), = Counter(got).most_common(1)
    if n * 2 <= len(got):
        raise InputError(f"{where}: the annotators {', '.join(names)} have no majority ({got})")
    return top


def read_pairs_file(path: Path, table: dict, subset: str) -> list[dict]:
    """The pairs of one file, normalized; InputError for a record that breaks the declaration."""
    fields, pairs = table["fields"], []
    for i, (where, record) in enumerate(_records(path)):
        if not isinstance(record, dict):
            raise InputError(f"{where}: not a JSON object")
        texts = {}
        for key in ("output_1", "output_2"):
            value = record.get(fields[key])
            if isinstance(value, (bool, int, float)):  # PandaLM has `"response1": true`: its Python str()
                value = str(value)
            if not isinstance(value, str):
                raise InputError(f"{where}: needs a text field {fields[key]!r}")
            texts[key] = value
        parts = [record.get(f) for f in fields["instruction"]]
        if not isinstance(parts[0], str) or not all(p is None or isinstance(p, str) for p in parts):
            raise InputError(f"{where}: needs a text field {fields['instruction'][0]!r}")
        instruction = "\n\n".join(p for p in parts if p and p.strip())
        pairs.append({"id": f"{subset}:{i}", "subset": subset, "index": i, "instruction": instruction, **texts,
                      "label": _label(where, record, table["label"])})
    if not pairs:
        raise InputError(f"{path}: no pairs in it")
    return pairs


def sample(pairs: list[dict], limit: int | None, seed: int = SEED) -> list[dict]:
    """LIMIT pairs stratified by subset and label, fixed seed; all of them without a limit."""
    if not limit or limit >= len(pairs):
        return list(pairs)
    keyed = [{"dataset": f"{p['subset']}|{p['label']}", "question_id": p["id"], "pair": p} for p in pairs]
    return [k["pair"] for k in stratified_sample(keyed, limit, seed)]


def read_pair_set(name: str, limit: int | None = None, path: str | Path = JUDGE_SETS_TOML):
    """(pairs, info) of a declared set: its files fetched (cache, sha256), read, sampled."""
    from data import fetch

    sets = load_pair_sets(path)
    if name not in sets:
        raise InputError(f"no pair set named {name!r} in {path} (sets: {', '.join(sets)}; or PAIRS=file.jsonl)")
    table = sets[name]
    files = {e["role"]: fetch(name, e) for e in table["files"]}
    pairs = [p for role, f in files.items() if not role.startswith("predictions:")
             for p in read_pairs_file(f, table, role)]
    chosen = sample(pairs, limit)
    info = {"name": name, "title": table.get("title", name), "meaning": table.get("meaning", ""),
            "ties": "tie" in table["label"]["values"].values(), "published": table.get("published"),
            "subsets": list(dict.fromkeys(p["subset"] for p in pairs)), "n_total": len(pairs),
            "subset_sizes": dict(Counter(p["subset"] for p in pairs)),
            "limit": limit, "seed": SEED, "files": {r: str(f) for r, f in files.items()},
            "predictions": table.get("predictions", [])}
    return chosen, info


def predictions(info: dict, pairs: list[dict]) -> dict[str, list[str | None]]:
    """{published judge: its prediction per pair ("1"/"2"/"tie", None = no label)} from the
    set's prediction files (read by record position, as the pairs file; idx checked when present)."""
    out = {}
    for spec in info.get("predictions", []):
        records = [r for _, r in _records(Path(info["files"][spec["role"]]))]
        values = {str(k): v for k, v in spec["values"].items()}
        got = []
        for p in pairs:
            record = records[p["index"]] if p["index"] < len(records) else {}
            got.append(values.get(str(record.get(spec["field"]))))
        out[spec["judge"]] = got
    return out
