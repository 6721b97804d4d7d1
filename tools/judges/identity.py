"""What a judge is, written without secrets: hashes of texts and files, scrubbed settings, masked errors.

A judge's identity (tools/judges/base.py) decides which cached verdicts it may reuse, and is
written to manifest.json and the judge-check files, so nothing here may keep a credential:
`scrub` drops settings named like one and the user:password part of URLs; `mask` replaces the
values of API keys found in the environment (a server may echo the Authorization header in an
error body) by ***. `check_path` is where `make judge-check` keeps a judge's last check, by name
(the board quotes it when its identity matches). Does not handle: secrets under other names than
those of SECRET_NAME.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from pathlib import Path

from lib.hashes import file_sha256  # noqa: F401  (judges' API: weights hashed once per path, size, mtime)

# Settings named like a credential (api_key, openai_api_keys, hf_token, ...; not max_tokens).
SECRET_NAME = re.compile(r"(?i)(^|_)(keys?|token|secrets?|password|auth)$")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scrub(value, keep: tuple[str, ...] = ("api_key_env",)):
    """`value` without credentials: keys named like one dropped, URLs without user:password."""
    if isinstance(value, dict):
        return {k: scrub(v, keep) for k, v in value.items() if k in keep or not SECRET_NAME.search(str(k))}
    if isinstance(value, list):
        return [scrub(v, keep) for v in value]
    if isinstance(value, str) and "://" in value:
        return public_url(value)
    return value


def public_url(url: str) -> str:
    """A URL without any user:password part, fit for logs and manifests."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def mask(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with every given secret, every API key in the environment (variables named like
    a key or token) and any URL's user:password replaced: fit for stderr and manifest.json."""
    found = [s for s in secrets if s]
    found += [v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 8]
    for secret in sorted(set(found), key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(://)[^/@\s]+@", r"\1", text)


def check_path(out_dir: Path, judge_name: str) -> Path:
    """OUT/judge/checks/NAME.json: the last judge-check of this judge (tools/judge_check.py writes
    it, the board reads it)."""
    return Path(out_dir) / "judge" / "checks" / (re.sub(r"[^\w.-]", "_", judge_name) + ".json")
