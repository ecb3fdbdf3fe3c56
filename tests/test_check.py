"""The pre-workshop check: PASS on a ready machine in under a minute, FAIL with what to do otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from course_lib import check
from course_lib.datasets import FETCH_COMMAND

ROOT = Path(__file__).resolve().parents[1]


def run_check_command(**environment: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "course_lib.check"],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        timeout=300,
    )
    return result, time.perf_counter() - start


def test_the_pins_it_checks_are_the_runtime_and_book_pins_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = [*project["dependencies"], *project["optional-dependencies"]["book"]]
    pins = check.pinned_packages()
    assert sorted(f"{name}=={version}" for name, version in pins.items()) == sorted(expected)
    assert "pytest" not in pins


def test_a_package_at_another_version_fails_the_environment_step_and_says_what_to_do(monkeypatch):
    monkeypatch.setattr(check, "pinned_packages", lambda: {"numpy": "0.0.1", "not-a-course-package": "1.0"})
    with pytest.raises(check.CheckFailed) as failure:
        check.check_packages()
    message = str(failure.value)
    assert "the course pins 0.0.1" in message and "not-a-course-package is missing" in message
    assert "python3 tasks.py setup" in message


def test_without_the_data_it_fails_says_how_to_fetch_them_and_skips_the_training(tmp_path):
    result, _ = run_check_command(COURSE_DATA_DIR=str(tmp_path))
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith("FAIL  data:") and FETCH_COMMAND in line for line in lines)
    assert "skip  training: it needs the data" in lines
    assert lines[-1].startswith("FAIL: data")
    assert not any(tmp_path.iterdir()), "the check must never download"


@pytest.mark.slow
def test_on_a_ready_machine_it_passes_in_under_a_minute():
    result, seconds = run_check_command()
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split(":")[0] for line in lines[1:-1]] == [
        "ok    environment",
        "ok    notebooks",
        "ok    data",
        "ok    training",
    ]
    assert lines[-1].startswith("PASS: this machine is ready for the workshop")
    assert seconds < 60, f"the check took {seconds:.0f} s"
