"""Execute the course chapters: jupytext ``py:percent`` sources in, papermill-executed notebooks out.

Used by ``tasks.py book`` (learner parameters) and by the notebook tests (the small profile)::

    python -m course_lib.book execute book/03_scgen.py /tmp/03_scgen.ipynb --parameters '{"n_epochs": 2}'

The executed notebook is what the static site shows and what a learner downloads or opens on Colab, so
:func:`execute_chapter` prepares it for both:

- a first cell, hidden on the site, installs the course where it is missing (Colab) and does nothing
  where course_lib is installed (:func:`setup_cell`);
- the chapter runs in a kernel whose outputs a static page can show (:func:`prepare_static_outputs`):
  text progress bars instead of widget bars, whose widget state is not saved, and figures that carry
  alt text made from their titles and axis labels;
- every widget output is replaced by a still image of the widget that says how to get the live one,
  and the saved widget state is dropped, so the page loads no widget manager (:func:`finish_for_static_page`).
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jupytext
import nbformat
import papermill
import yaml
from tqdm.asyncio import tqdm as text_tqdm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STATIC_SETUP_TAG = "static-page-setup"
"""Tag of the cell that prepares the kernel for the static page; it is removed after the run."""


def book_repository_url(config: Path) -> str:
    """The ``repository.url`` of a Jupyter Book ``_config.yml``: the one place the course's address is set.

    The Binder, Colab and repository buttons of the site and the set-up cell of every executed chapter
    are all derived from it.
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(
            f"{config} not found: execute_chapter reads the repository URL from the book's _config.yml; "
            "pass repository_url=... or keep the chapter in the book folder next to _config.yml."
        )
    url = (yaml.safe_load(config.read_text()).get("repository") or {}).get("url")
    if not url:
        raise ValueError(f"{config} has no repository.url; set it to the course's repository.")
    return url.rstrip("/")


def setup_cell(url: str) -> nbformat.NotebookNode:
    """The first cell of an executed chapter: set up the course where course_lib is not installed.

    On Colab (or any Python without the course) it clones ``url``, installs course_lib with its pinned
    packages and changes into the chapter's folder, so that the committed tables the chapters read are
    found. Where course_lib is importable (the course's environment, Binder, the build) it does nothing.
    It is tagged ``remove-cell``, so the site does not show it.
    """
    folder = url.rsplit("/", 1)[-1].removesuffix(".git")
    source = f'''\
# Colab, or any Python without the course: fetch the course, install course_lib with its pinned
# packages (a few minutes, once) and work in the chapter's folder. Where course_lib is already
# installed (the course environment, Binder) this cell does nothing.
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("course_lib") is None:
    if not os.path.isdir("{folder}"):
        subprocess.run(["git", "clone", "--depth=1", "{url}", "{folder}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "./{folder}"], check=True)
    importlib.invalidate_caches()
    print("course_lib installed. If a later cell fails to import a package, restart the session "
          "(Runtime > Restart session) and run all cells again.")
if os.path.isdir("{folder}/book"):
    os.chdir("{folder}/book")'''
    return nbformat.v4.new_code_cell(source, metadata={"tags": ["remove-cell"]})


class TextProgressBar(text_tqdm):
    """tqdm's plain-text bar, written to stdout: what ``tqdm.auto`` draws while a chapter runs for the site.

    A notebook's text output keeps the finished bar on the static page; a widget bar would need its
    widget state and a widget manager. Stdout keeps the bars out of the stderr output that the book
    test treats as a warning.
    """

    def __init__(self, *args, file=None, **kwargs):
        super().__init__(*args, file=sys.stdout if file is None else file, **kwargs)


def describe_figure(figure: Figure) -> str:
    """Alt text for a matplotlib figure, from its title and each panel's title and axis labels."""
    panels = [axes for axes in figure.axes if axes.get_visible() and not hasattr(axes, "_colorbar")]
    parts = []
    for axes in panels:
        title = axes.get_title() or axes.get_title("left")
        labels = [label for label in (axes.get_ylabel(), axes.get_xlabel()) if label]
        axis_text = " against ".join(labels)
        parts.append(f"{title} ({axis_text})" if title and axis_text else title or axis_text)
    heading = "Figure" if len(panels) < 2 else f"Figure of {len(panels)} panels"
    sentences = [heading, figure.get_suptitle(), "; ".join(part for part in parts if part)]
    return ". ".join(sentence for sentence in sentences if sentence) + "."


def prepare_static_outputs() -> None:
    """Make the running IPython kernel produce outputs that a static page can show.

    ``tqdm.auto`` draws :class:`TextProgressBar` instead of widget bars, and every matplotlib figure
    that is displayed carries its :func:`describe_figure` text as ``alt`` in the output's metadata
    (:func:`finish_for_static_page` moves it to where the book reads it). Call it before anything imports
    ``tqdm.auto``; :func:`execute_chapter` runs it in a cell of its own, removed after the run.
    """
    import tqdm.auto
    from IPython import get_ipython
    from matplotlib.figure import Figure

    tqdm.auto.tqdm = TextProgressBar
    formatter = get_ipython().display_formatter
    plain_format = formatter.format

    def format_with_alt(obj, include=None, exclude=None):
        data, metadata = plain_format(obj, include=include, exclude=exclude)
        if isinstance(obj, Figure) and "image/png" in data:
            metadata.setdefault("image/png", {})["alt"] = describe_figure(obj)
        return data, metadata

    formatter.format = format_with_alt


def static_setup_cell() -> nbformat.NotebookNode:
    """The cell that runs :func:`prepare_static_outputs` in the chapter's kernel."""
    return nbformat.v4.new_code_cell(
        "from course_lib.book import prepare_static_outputs\n\nprepare_static_outputs()",
        metadata={"tags": ["remove-cell", STATIC_SETUP_TAG]},
    )


def widget_still(model_id: str, state: dict[str, Any]) -> str:
    """HTML that looks like the saved widget ``model_id`` (a disabled copy of its controls)."""
    model = state.get(model_id, {})
    name, values = model.get("model_name", ""), model.get("state", {})
    if name in {"VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"}:
        children = [child.removeprefix("IPY_MODEL_") for child in values.get("children", [])]
        return "".join(widget_still(child, state) for child in children)
    if name in {"DropdownModel", "SelectModel"}:
        labels, chosen = values.get("_options_labels", []), values.get("index")
        options = "".join(
            f"<option{' selected' if index == chosen else ''}>{html.escape(str(label))}</option>"
            for index, label in enumerate(labels)
        )
        description = html.escape(values.get("description") or "Choose:")
        return f"<label>{description} <select disabled>{options}</select></label>"
    if name == "OutputModel":
        return ""  # its outputs appear when the widget is used
    return f"<p><em>[{html.escape(name.removesuffix('Model') or 'widget')}]</em></p>"


STILL_NOTE = (
    "Interactive when you run the notebook: launch it on Binder or Colab with the rocket button at the top "
    "of the page, or run it on your own machine. On this page it is a still image."
)


def settled_streams(outputs: list) -> list:
    """``outputs`` with consecutive stream outputs of one name merged, each line as a terminal leaves it.

    A text progress bar redraws its line after a carriage return; the page keeps only the last drawing
    (the finished bar), as a terminal would.
    """
    settled = []
    for output in outputs:
        previous = settled[-1] if settled else None
        if output.output_type == "stream" and previous and previous.get("name") == output.name:
            previous.text += output.text
        else:
            settled.append(output)
    for output in settled:
        if output.output_type == "stream":
            lines = output.text.split("\n")
            output.text = "\n".join(next((p for p in reversed(line.split("\r")) if p), "") for line in lines)
    return settled


def show_still_widgets(cell: nbformat.NotebookNode, state: dict[str, Any]) -> None:
    """Replace every widget output of ``cell`` by a still image with :data:`STILL_NOTE`, and show it.

    A cell tagged ``remove-output`` because its widget could not appear on a static page shows the
    still image.
    """
    for output in cell.get("outputs", []):
        view = output.get("data", {}).get(WIDGET_VIEW)
        if view is None:
            continue
        still = widget_still(view["model_id"], state)
        output["data"] = {
            "text/html": f'<div class="widget-still"><p>{STILL_NOTE}</p>{still}</div>',
            "text/plain": STILL_NOTE,
        }
        cell.metadata["tags"] = [tag for tag in cell.metadata.get("tags", []) if tag != "remove-output"]


def move_alt_text(cell: nbformat.NotebookNode) -> None:
    """Copy the alt text of the cell's figures (:func:`prepare_static_outputs`) to where the book reads it.

    That is the cell metadata ``mystnb.image.alt``, one text per cell: the texts of several figures are
    joined, and alt text that a chapter sets itself is kept.
    """
    alts = [output.get("metadata", {}).get("image/png", {}).pop("alt", None) for output in cell.outputs]
    alts = [alt for alt in alts if alt]
    if alts:
        cell.metadata.setdefault("mystnb", {}).setdefault("image", {}).setdefault("alt", " ".join(alts))


def finish_for_static_page(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Prepare an executed notebook for a static page, in place, and return it.

    Removes the cell tagged :data:`STATIC_SETUP_TAG`, drops the saved widget state and, in every code
    cell, settles the text streams (:func:`settled_streams`), shows widgets as still images
    (:func:`show_still_widgets`) and moves the figures' alt text (:func:`move_alt_text`).
    """
    state = notebook.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    notebook.cells = [c for c in notebook.cells if STATIC_SETUP_TAG not in c.metadata.get("tags", [])]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = settled_streams(cell.outputs)
            show_still_widgets(cell, state)
            move_alt_text(cell)
    return notebook


def execute_chapter(
    source: Path, output: Path, *, parameters: dict | None = None, repository_url: str | None = None
) -> None:
    """Execute the jupytext chapter ``source`` with papermill and write the executed notebook to ``output``.

    ``parameters`` replace the defaults of the cell tagged ``parameters``. The chapter runs in its own
    folder (relative paths work as in Jupyter). Any cell error stops the run and is raised. The
    notebook starts with :func:`setup_cell` for ``repository_url`` (by default the ``repository.url``
    of the ``_config.yml`` above the chapter's folder), runs with :func:`prepare_static_outputs` and
    is finished by :func:`finish_for_static_page`.
    """
    source, output = Path(source).resolve(), Path(output).resolve()
    url = repository_url or book_repository_url(source.parents[1] / "_config.yml")
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells[:0] = [setup_cell(url), static_setup_cell()]
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial.ipynb")
    try:
        papermill.execute_notebook(
            notebook,
            partial,
            parameters=parameters or {},
            kernel_name="python3",
            cwd=str(source.parent),
            progress_bar=False,
        )
        nbformat.write(finish_for_static_page(nbformat.read(partial, as_version=4)), partial)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)


def main() -> None:
    """Command line: ``python -m course_lib.book execute SOURCE OUTPUT --parameters JSON``."""
    parser = argparse.ArgumentParser(description="Execute a course chapter with papermill.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute")
    run.add_argument("source", type=Path)
    run.add_argument("output", type=Path)
    run.add_argument("--parameters", default="{}", help="JSON object of parameters to inject")
    args = parser.parse_args()
    execute_chapter(args.source, args.output, parameters=json.loads(args.parameters))


if __name__ == "__main__":
    main()
