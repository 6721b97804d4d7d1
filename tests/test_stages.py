"""The per-model stages (download, quantize, fetch_models, infer) share one loop (tools/lib/stages.py):
the same one-line error and exit code from each, a failed model never stops the next, Ctrl-C is 130.
No model runs: the stages stop at models.toml, and the loop is driven with plain functions."""
import subprocess
import sys
from pathlib import Path

import pytest

from lib.stages import run_models

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["download.py", "quantize.py", "fetch_models.py", "infer.py"]


@pytest.mark.parametrize("stage", STAGES)
def test_an_unknown_model_is_one_line_and_exit_2_from_every_stage(tmp_path, stage):
    (tmp_path / "models.toml").write_text('[models.known]\npath = "models/known.gguf"\n', encoding="utf-8")
    (tmp_path / "q.txt").write_text("What is 2+2?\n", encoding="utf-8")
    extra = ["--questions", str(tmp_path / "q.txt"), "--out", str(tmp_path / "out")] if stage == "infer.py" else []
    done = subprocess.run([sys.executable, str(ROOT / "tools" / stage), "nosuchmodel", "--models-toml",
                           str(tmp_path / "models.toml"), *extra], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nosuchmodel" in lines[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_failed_model_is_one_line_and_the_next_still_runs(capsys):
    ran, forgotten = [], []

    def each(name):
        ran.append(name)
        if name == "b":
            raise OSError("disk full")
        return name != "c"  # c fails and says so itself

    code = run_models("infer", lambda: ["a", "b", "c", "d"], each, failures=(OSError,),
                      describe=lambda name, err: f"model '{name}': {err}", after_failure=forgotten.append)
    assert code == 1 and ran == ["a", "b", "c", "d"] and forgotten == ["b"]
    assert capsys.readouterr().err.splitlines() == ["error: model 'b': disk full"]


def test_ctrl_c_is_one_line_and_130(capsys):
    def each(name):
        raise KeyboardInterrupt

    code = run_models("download", lambda: ["a", "b"], each, interrupted=lambda name: f"run make download MODELS={name}")
    assert code == 130
    assert [line for line in capsys.readouterr().err.splitlines() if line] == ["interrupted: run make download MODELS=a"]


def test_a_broken_setup_is_exit_2_before_any_model():
    from lib.registry import RegistryError

    def prepare():
        raise RegistryError("models.toml: broken")

    assert run_models("quantize", prepare, lambda name: pytest.fail("no model may run")) == 2
