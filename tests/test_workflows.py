"""The CI workflows (``.github/workflows``): actionlint passes on every one, and they run the README's two
commands with the caches, schedule and deployment that the README's publishing steps describe."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def workflow(name: str) -> dict:
    """A workflow as data; YAML 1.1 reads the key ``on`` as ``True``, so it is put back."""
    data = yaml.safe_load((ROOT / ".github" / "workflows" / f"{name}.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(data: dict, job: str) -> list[dict]:
    return data["jobs"][job]["steps"]


def readme_command(task: str) -> str:
    """The README's command for ``task`` (``python3 tasks.py test`` or ``... book``)."""
    match = re.search(rf"^(python3 tasks\.py {task})\b", (ROOT / "README.md").read_text(), flags=re.MULTILINE)
    assert match, f"the README shows no `python3 tasks.py {task}` command"
    return match[1]


def test_actionlint_passes_on_every_workflow():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
        "actionlint"
    )
    if actionlint is None:
        pytest.fail("actionlint is not installed: install the dev extra (`pip install -e '.[dev]'`)")
    assert [path.name for path in WORKFLOWS] == ["book.yml", "tests.yml"]
    result = subprocess.run([actionlint, *WORKFLOWS], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["tests", "book"])
def test_both_workflows_run_weekly_so_that_drift_in_the_package_index_shows(name):
    assert workflow(name)["on"]["schedule"], f"{name}: no weekly schedule"


def cache_keys(job_steps: list[dict]) -> list[str]:
    return [step["with"]["key"] for step in job_steps if step.get("uses", "").startswith("actions/cache@")]


def python_step(job_steps: list[dict]) -> dict:
    return next(step for step in job_steps if step.get("uses", "").startswith("actions/setup-python@"))


def test_the_tests_workflow_runs_the_readme_test_command_on_every_push_and_pull_request():
    data = workflow("tests")
    assert "push" in data["on"] and "pull_request" in data["on"]
    assert "branches" not in (data["on"]["push"] or {})
    job = steps(data, "tests")
    assert [step for step in job if step.get("run") == readme_command("test")]
    assert any(step.get("run") == "bash .ci/install-chromium.sh" for step in job), (
        "no browser for the site tests"
    )
    assert "3.11" in data["jobs"]["tests"]["strategy"]["matrix"]["python"]
    setup = python_step(job)["with"]
    assert setup["cache"] == "pip" and setup["cache-dependency-path"] == "pyproject.toml"
    assert "hashFiles('course_lib/data/registry.json')" in " ".join(cache_keys(job))


def test_the_book_workflow_builds_every_chapter_and_deploys_only_from_main():
    data = workflow("book")
    assert data["on"]["push"]["branches"] == ["main"] and "pull_request" in data["on"]
    build = steps(data, "build")
    assert [step for step in build if step.get("run") == readme_command("book")]
    assert python_step(build)["with"]["cache-dependency-path"] == "pyproject.toml"
    keys = " ".join(cache_keys(build))
    assert "hashFiles('course_lib/data/registry.json')" in keys
    assert re.search(r"hashFiles\('book/\*\.py', 'pyproject\.toml'", keys), (
        "executed chapters not keyed on sources"
    )
    upload = next(step for step in build if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    on_main = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    for job in ("deploy", "notebooks"):
        assert data["jobs"][job]["if"] == on_main, f"{job} must run only for pushes to main"
    assert steps(data, "deploy")[0]["uses"].startswith("actions/deploy-pages@")


def test_the_colab_branch_of_the_site_is_the_branch_the_workflow_pushes_the_notebooks_to():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    branch = config["sphinx"]["config"]["executed_notebooks_branch"]
    assert workflow("book")["jobs"]["notebooks"]["env"]["BRANCH"] == branch


def test_an_executed_chapter_is_stale_when_the_benchmark_table_it_reads_changes(tmp_path, monkeypatch):
    """tasks.py re-executes a chapter when the package or the committed benchmark tables change (what
    chapters 6, 8 and 9 read), and not when a file is only touched: the CI cache restores old mtimes."""
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    for name in ("pyproject.toml", "_config.yml", "book/chapter.py", "course_lib/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    table = tmp_path / "data" / "benchmark" / "results.csv"
    table.parent.mkdir(parents=True)
    table.write_text("model,value\nscgen,0.9\n")
    monkeypatch.setattr(tasks, "ROOT", tmp_path)

    def fingerprint() -> str:
        return tasks.chapter_fingerprint(tmp_path / "book" / "chapter.py", "{}")

    before = fingerprint()
    os.utime(table, (0, 0))
    assert fingerprint() == before
    table.write_text("model,value\nscgen,0.8\n")
    assert fingerprint() != before
