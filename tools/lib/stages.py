"""The loop of the stages that work model by model (download.py, quantize.py, fetch_models.py,
infer.py), so that each gives the same one-line errors and exit codes:

    return run_models("download", prepare, each, failures=(DownloadError,), interrupted=...)

- prepare() reads models.toml and the arguments and returns the models' specs (or an exit code to
  stop with, e.g. after printing what was asked). A RegistryError or InputError there (an unknown
  model name, a broken models.toml, a missing questions file), or one of `setup_errors`, is one
  line `error: ...` and exit 2: nothing has run.
- each(spec) does one model; returning False means it failed and has said why. One of `failures`
  raised there is one line `error: ...` (`describe(spec, err)` when given, else the error's own
  text), `after_failure(spec)` runs, and the next model still runs. The exit code is then 1.
- Ctrl-C is one line (`interrupted: ...`, what was kept and what to run) and exit 130.
Judging tools have their own runner, judges/resolve.py run_reporting_errors (a judge's errors are
masked, and every verdict is kept). Not handled: models run in parallel (they run one by one).
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_models(stage: str, prepare: Callable[[], Iterable | int], each: Callable[[object], bool | None], *,
               failures: tuple[type[BaseException], ...] = (), setup_errors: tuple[type[BaseException], ...] = (),
               interrupted: Callable[[object], str] | None = None,
               describe: Callable[[object, BaseException], str] | None = None,
               after_failure: Callable[[object], None] | None = None) -> int:
    """0 when every model is done, 1 when one failed (the others still ran), 2 when nothing could
    start, 130 on Ctrl-C."""
    from lib.records import InputError
    from lib.registry import RegistryError

    try:
        specs = prepare()
    except (RegistryError, InputError, *setup_errors) as err:
        say(f"error: {err}")
        return 2
    if isinstance(specs, int):
        return specs
    status = 0
    for spec in specs:
        try:
            done = each(spec)
        except KeyboardInterrupt:
            say(f"\ninterrupted: {interrupted(spec) if interrupted else f'run make {stage} again'}")
            return 130
        except failures as err:
            say(f"error: {describe(spec, err) if describe else err}")
            done = False
            if after_failure:
                after_failure(spec)
        if done is False:
            status = 1
    return status
