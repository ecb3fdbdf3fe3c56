"""Sphinx extension: every way to run a chapter, from the page's header, and nothing loaded from elsewhere.

- The download menu of a chapter offers its jupytext source (``.py``) next to the executed ``.ipynb``.
- The Colab button opens the executed notebook from the branch that the book workflow pushes them to
  (``executed_notebooks_branch``): the chapters' ``.ipynb`` files are build products, absent from main.
  Like the Binder and repository buttons, it is derived from ``repository.url`` in ``_config.yml``.
- Thebe is not loaded: sphinx-thebe fetches its code from a CDN and points at an example repository
  unless configured; live code comes from Binder, Colab or a local run instead (the home page, "How to
  run it").
"""

from __future__ import annotations

import shutil
from pathlib import Path


def drop_thebe(app) -> None:
    """Disconnect sphinx-thebe (always loaded by Jupyter Book) so that no page carries its scripts."""
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if listener.handler.__module__.startswith("sphinx_thebe"):
                app.disconnect(listener.id)
    app.registry.css_files = [
        (name, attributes) for name, attributes in app.registry.css_files if "thebe" not in name
    ]


def header_group(context: dict, label: str) -> list[dict] | None:
    """The buttons of the header menu ``label`` (``download-buttons``, ``launch-buttons``), if the page has it."""
    for group in context.get("header_buttons", []):
        if group.get("label") == label:
            return group["buttons"]
    return None


def add_run_buttons(app, pagename, templatename, context, doctree) -> None:
    """Add the ``.py`` download and point the Colab button at the executed notebook of a chapter."""
    source = Path(app.srcdir, f"{pagename}.py")
    if not source.exists() or not Path(app.srcdir, f"{pagename}.ipynb").exists():
        return
    downloads = header_group(context, "download-buttons")
    if downloads is not None:
        target = Path(app.outdir, "_sources", f"{pagename}.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        downloads.insert(
            1,
            {
                "type": "link",
                "url": f"{context['pathto']('_sources', 1)}/{pagename}.py",
                "text": ".py",
                "tooltip": "Download the chapter as a Python script (jupytext percent format)",
                "icon": "fas fa-file-code",
                "label": "download-python-button",
            },
        )
    launches = header_group(context, "launch-buttons")
    if launches is not None:
        options = app.config.html_theme_options
        owner_repo = options["repository_url"].rstrip("/").split("github.com/", 1)[-1]
        colab_url = options["launch_buttons"]["colab_url"].rstrip("/")
        branch = app.config.executed_notebooks_branch
        colab = f"{colab_url}/github/{owner_repo}/blob/{branch}/{pagename}.ipynb"
        for button in launches:
            if button.get("text") == "Colab":
                button["url"] = colab


def setup(app):
    app.add_config_value("executed_notebooks_branch", "notebooks", "html")
    drop_thebe(app)
    app.connect("html-page-context", add_run_buttons, priority=510)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
