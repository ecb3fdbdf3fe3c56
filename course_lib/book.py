"""Execute the course chapters: jupytext ``py:percent`` sources in, papermill-executed notebooks out.

Used by ``tasks.py book`` (learner parameters) and by the notebook tests (the small profile)::

    python -m course_lib.book execute book/03_scgen.py /tmp/03_scgen.ipynb --parameters '{"n_epochs": 2}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jupytext
import papermill


def execute_chapter(source: Path, output: Path, *, parameters: dict | None = None) -> None:
    """Execute the jupytext chapter ``source`` with papermill and write the executed notebook to ``output``.

    ``parameters`` replace the defaults of the cell tagged ``parameters``. The chapter runs in its own
    folder (relative paths work as in Jupyter). Any cell error stops the run and is raised.
    """
    source, output = Path(source).resolve(), Path(output).resolve()
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
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
