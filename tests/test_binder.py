"""The Binder environment, as repo2docker reads it from ``.binder/``: the files it needs are there, and
``postBuild`` run in a fresh virtual environment with the pinned packages leaves notebooks that execute.

repo2docker uses ``.binder/`` instead of the repository root when the folder exists, installs
``environment.yml`` (checked against pyproject.toml by ``test_environments.py``) and then runs the
executable ``postBuild`` from the repository root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import CHAPTERS, ROOT, SMALL, fresh_environment

BINDER = ROOT / ".binder"


def test_binder_finds_its_environment_and_its_set_up_script():
    assert sorted(path.name for path in BINDER.iterdir()) == ["environment.yml", "postBuild"]
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "repo2docker runs postBuild only when it is executable"
    assert post_build.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in post_build.read_text(), "a failing step must fail the image build"
    assert "  - python=3.11" in (BINDER / "environment.yml").read_text()


@pytest.mark.slow
def test_post_build_in_a_fresh_environment_leaves_notebooks_that_execute(tmp_path):
    repository = tmp_path / "repository"  # what postBuild and the chapters read of the repository
    repository.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, repository / name)
    for name in ("course_lib", ".binder", "book"):
        ignored = shutil.ignore_patterns("*.ipynb", "*.stamp", "__pycache__")
        shutil.copytree(ROOT / name, repository / name, ignore=ignored)
    python = fresh_environment(tmp_path / "environment")
    environment = {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_BUILD_ISOLATION": "0",  # build course_lib with the installed setuptools, offline
    }
    build = subprocess.run(
        ["bash", ".binder/postBuild"], cwd=repository, env=environment, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    for chapter in CHAPTERS:
        notebook = nbformat.read(repository / "book" / f"{chapter}.ipynb", as_version=4)
        nbformat.validate(notebook)
        assert notebook.metadata["kernelspec"]["name"] == "python3"
    chapter = repository / "book" / f"{CHAPTERS[0]}.ipynb"
    small = ["-p", "fraction", str(SMALL["fraction"])]
    run = subprocess.run(
        [python, "-m", "papermill", chapter, tmp_path / "executed.ipynb", *small, "--cwd", chapter.parent],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    where = subprocess.run(
        [python, "-c", "import course_lib; print(course_lib.__file__)"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(repository), (
        "course_lib is not the one postBuild installed"
    )
