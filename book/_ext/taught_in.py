"""Sphinx extension: every public name of course_lib that a chapter uses gets a "Taught in" note
linking back to that chapter (as d2l's "Defined in" notes link the package to the book).

A chapter uses a name when its source imports it (``from course_lib.x import name``) or calls it through
an imported module (``plotting.metric_bars``). The notes are computed from the chapter sources at every
build, so they cannot go stale.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1]


def chapter_title(source: Path) -> str:
    """The first markdown heading of a jupytext chapter."""
    match = re.search(r"^# # (.+)$", source.read_text(), flags=re.MULTILINE)
    return match.group(1) if match else source.stem


def names_used(source: Path) -> set[str]:
    """Dotted course_lib names a chapter imports or reaches through an imported course_lib module."""
    code = "\n".join(line for line in source.read_text().splitlines() if not line.startswith("# %"))
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    used, modules = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("course_lib"):
            for alias in node.names:
                used.add(f"{node.module}.{alias.name}")
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            used.add(f"{modules[node.value.id]}.{node.attr}")
    return used


def chapters_by_name() -> dict[str, list[tuple[str, str]]]:
    """Dotted name -> ``(docname, title)`` of every chapter that uses it, in chapter order."""
    found = defaultdict(list)
    for source in sorted(BOOK.glob("[0-9]*.py")):
        for name in names_used(source):
            found[name].append((f"/book/{source.stem}", chapter_title(source)))
    return found


def add_taught_in(app, what, name, obj, options, lines):
    """Append the "Taught in" note to the docstring of every name a chapter uses (also where a chapter
    imports it from a package that re-exports it)."""
    usage = app.course_chapters
    public = {name, f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"}
    for alias, target in app.course_aliases.items():
        if target is obj:
            public.add(alias)
    chapters = dict.fromkeys(chapter for key in public for chapter in usage.get(key, []))
    if chapters:
        links = ", ".join(f":doc:`{title} <{docname}>`" for docname, title in chapters)
        lines += ["", f"**Taught in:** {links}.", ""]


def collect(app):
    import importlib

    app.course_chapters = chapters_by_name()
    aliases = {}
    for name in app.course_chapters:
        module, _, attribute = name.rpartition(".")
        try:
            aliases[name] = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            continue
    app.course_aliases = aliases


def setup(app):
    app.connect("builder-inited", collect)
    app.connect("autodoc-process-docstring", add_taught_in)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
