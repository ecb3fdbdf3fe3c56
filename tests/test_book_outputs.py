"""course_lib.book's preparation of an executed chapter: the Colab set-up cell, outputs that a static page
can show (text progress bars, figures with alt text, widgets as still images) and the repository URL
read from the book's configuration. The chapters themselves run in ``test_book.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import pytest
from conftest import ROOT, fresh_environment

from course_lib.book import (
    STATIC_SETUP_TAG,
    STILL_NOTE,
    WIDGET_STATE,
    WIDGET_VIEW,
    book_repository_url,
    describe_figure,
    finish_for_static_page,
    settled_streams,
    setup_cell,
    static_setup_cell,
)

URL = book_repository_url(ROOT / "_config.yml")


def test_the_repository_url_is_read_from_the_book_configuration(tmp_path):
    assert URL.startswith("https://github.com/") and not URL.endswith("/")
    with pytest.raises(FileNotFoundError, match="repository_url"):
        book_repository_url(tmp_path / "_config.yml")
    (tmp_path / "_config.yml").write_text("title: A book\n")
    with pytest.raises(ValueError, match="repository.url"):
        book_repository_url(tmp_path / "_config.yml")


def fake_git(folder: Path, source: Path | None) -> Path:
    """A ``git`` that records its arguments and, for a clone, copies ``source`` (or fails without one)."""
    folder.mkdir()
    script = folder / "git"
    copy = f'for last; do :; done; cp -R "{source}" "$last"' if source else "exit 1"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder / "calls"}"\n{copy}\n')
    script.chmod(0o755)
    return folder


def test_the_set_up_cell_does_nothing_where_course_lib_is_installed(tmp_path):
    git = fake_git(tmp_path / "bin", source=None)
    run = subprocess.run(
        [sys.executable, "-c", setup_cell(URL).source],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{git}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0 and run.stdout == "", run.stderr
    assert not (git / "calls").exists()
    assert setup_cell(URL).metadata["tags"] == ["remove-cell"]


@pytest.mark.slow
def test_the_set_up_cell_installs_the_course_and_enters_the_chapter_folder_where_it_is_missing(tmp_path):
    course = tmp_path / "course"  # what a clone of the repository holds, as far as the install needs it
    course.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (course / name).write_bytes((ROOT / name).read_bytes())
    for name in ("course_lib", "book"):
        subprocess.run(["cp", "-R", ROOT / name, course / name], check=True)
    git = fake_git(tmp_path / "bin", source=course)
    python = fresh_environment(tmp_path / "environment")
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    script = setup_cell(URL).source + "\nimport course_lib\nprint(course_lib.__file__)\nprint(os.getcwd())\n"
    environment = {**os.environ, "PATH": f"{git}{os.pathsep}{python.parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(
        [python, "-c", script],
        cwd=content,
        env={**environment, "PIP_NO_BUILD_ISOLATION": "0"},  # build with the installed setuptools, offline
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    folder = URL.rsplit("/", 1)[1]
    assert (git / "calls").read_text().split() == ["clone", "--depth=1", URL, folder]
    module, cwd = run.stdout.strip().splitlines()[-2:]
    assert Path(module).is_relative_to(tmp_path / "environment"), "course_lib was not installed"
    assert Path(cwd) == content / folder / "book"


def test_streams_are_merged_and_each_line_shows_the_last_drawing_of_its_bar():
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="cells: 100\n"),
        nbformat.v4.new_output("stream", name="stdout", text="\rscgen:   0%| | 0/2\rscgen:  50%|█ | 1/2"),
        nbformat.v4.new_output("stream", name="stdout", text="\rscgen: 100%|██| 2/2\r"),
        nbformat.v4.new_output("stream", name="stdout", text="\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "a table"}),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
    ]
    settled = settled_streams(outputs)
    assert [output.get("text") for output in settled] == ["cells: 100\nscgen: 100%|██| 2/2\n", None, "done\n"]


def widget_notebook() -> nbformat.NotebookNode:
    """An executed notebook as papermill leaves it: the static set-up cell, a menu in a cell tagged
    ``remove-output`` (the VBox of a Dropdown and an Output, with their saved state) and a figure."""
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_menu", "IPY_MODEL_out"]}},
        "menu": {
            "model_name": "DropdownModel",
            "state": {"_options_labels": ["B cells", "CD4 T cells"], "index": 1, "description": "Held out:"},
        },
        "out": {"model_name": "OutputModel", "state": {"outputs": []}},
    }
    menu = nbformat.v4.new_code_cell("display(menu)", metadata={"tags": ["remove-output"]})
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    menu.outputs = [
        nbformat.v4.new_output("display_data", data={WIDGET_VIEW: view, "text/plain": "VBox(...)"})
    ]
    figure = nbformat.v4.new_code_cell("figure")
    figure.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
            metadata={"image/png": {"alt": "Figure. Loss (loss against epoch)."}},
        )
    ]
    notebook = nbformat.v4.new_notebook(cells=[static_setup_cell(), menu, figure])
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return notebook


def test_a_finished_notebook_shows_widgets_as_still_images_and_figures_with_alt_text():
    notebook = finish_for_static_page(widget_notebook())
    assert "widgets" not in notebook.metadata, "the widget state would load the widget manager from a CDN"
    assert not any(STATIC_SETUP_TAG in cell.metadata.get("tags", []) for cell in notebook.cells)
    menu, figure = notebook.cells
    assert "remove-output" not in menu.metadata["tags"]
    still = menu.outputs[0]["data"]["text/html"]
    assert STILL_NOTE in still and WIDGET_VIEW not in menu.outputs[0]["data"]
    assert (
        "<label>Held out: <select disabled><option>B cells</option><option selected>CD4 T cells</option>"
        in still
    )
    assert figure.metadata["mystnb"]["image"]["alt"] == "Figure. Loss (loss against epoch)."
    assert "alt" not in figure.outputs[0]["metadata"]["image/png"]
    nbformat.validate(notebook)


def test_a_figure_is_described_by_its_titles_and_axis_labels():
    figure, (left, right) = plt.subplots(1, 2)
    figure.suptitle("Training of scGen")
    left.set(title="Loss per epoch", xlabel="epoch", ylabel="loss")
    right.set(title="Components")
    assert describe_figure(figure) == (
        "Figure of 2 panels. Training of scGen. Loss per epoch (loss against epoch); Components."
    )
    plt.close(figure)


def test_in_a_kernel_progress_bars_are_text_on_stdout_and_figures_carry_alt_text(tmp_path):
    script = textwrap.dedent(
        """
        import contextlib, io, json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        from course_lib.book import TextProgressBar, prepare_static_outputs
        prepare_static_outputs()
        from tqdm.auto import tqdm
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from IPython.core.pylabtools import select_figure_formats
        select_figure_formats(shell, {"png"})  # what the inline backend of a kernel registers
        figure, axes = plt.subplots()
        axes.set(title="Loss", xlabel="epoch", ylabel="loss")
        data, metadata = shell.display_formatter.format(figure)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            for _ in tqdm(range(3), desc="scgen"):
                pass
        alt = metadata["image/png"]["alt"]
        print(json.dumps({"bar": tqdm is TextProgressBar, "text": out.getvalue(), "alt": alt}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "IPYTHONDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["bar"] and "scgen: 100%|" in found["text"]
    assert found["alt"] == "Figure. Loss (loss against epoch)."
