"""The package's structure: layers that import downwards only, public names with docstrings, no private
name used across modules, a module map that is complete, and an install that needs no checkout."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import fresh_environment

import course_lib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_lib"

LAYERS = [
    ("course_lib.keys", "course_lib.checks"),
    ("course_lib.datasets",),
    ("course_lib.preprocessing", "course_lib.annotation"),
    ("course_lib.models",),
    ("course_lib.metrics",),
    ("course_lib.experiment",),
    ("course_lib.benchmark", "course_lib.tuning", "course_lib.crossstudy"),
    ("course_lib.plotting",),
    ("course_lib.book",),
    ("course_lib.check",),
]
"""The architecture, from the bottom up (README, "Layout"): a module may import its own layer and the
layers below it, never one above. Within a layer, the order of the tuple is the order of imports."""


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``import``/``from ... import`` of course_lib in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("course_lib"):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names if alias.name.startswith("course_lib")]
    return found


def layer_of(module: str) -> tuple[int, int]:
    for level, names in enumerate(LAYERS):
        for position, prefix in enumerate(names):
            if module == prefix or module.startswith(prefix + "."):
                return level, position
    return (-1, 0) if module == "course_lib" else pytest.fail(f"{module} is in no layer of LAYERS")


def test_no_module_imports_another_modules_private_names():
    offences = []
    for name, path in modules().items():
        for module, names in imports(path):
            private_module = any(part.startswith("_") and part != "__init__" for part in module.split("."))
            private_names = [n for n in names if n.startswith("_") and module != name]
            if private_module or private_names:
                offences.append(f"{name}: from {module} import {', '.join(names)}")
        tree = ast.parse(path.read_text())
        aliases = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "course_lib"
            for a in n.names
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert offences == []


def test_every_import_goes_down_the_layers():
    upward = []
    for name, path in modules().items():
        own = layer_of(name)
        for module, _ in imports(path):
            if module != "course_lib" and layer_of(module) > own and not module.startswith(name + "."):
                upward.append(f"{name} (layer {own}) imports {module} (layer {layer_of(module)})")
    assert upward == []


def test_the_package_docstring_lists_every_module():
    listed = course_lib.__doc__
    top_level = {name.split(".")[1] for name in modules() if name.count(".") >= 1}
    missing = sorted(name for name in top_level if f"\n{name}\n" not in listed)
    assert missing == []


def test_the_api_page_documents_every_module():
    """book/api.md has an ``automodule`` entry for every module (a package's ``__main__`` only runs it)."""
    documented = set(
        re.findall(r"^\.\. automodule:: (\S+)$", (ROOT / "book" / "api.md").read_text(), flags=re.M)
    )
    missing = sorted(name for name in modules() if not name.endswith("__main__") and name not in documented)
    assert missing == []


def public_objects():
    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value) or inspect.isclass(value):
                yield f"{module.__name__}.{name}", value


def test_every_public_function_and_class_has_a_docstring():
    undocumented = [name for name, value in public_objects() if not inspect.getdoc(value)]
    assert undocumented == []


def test_every_module_has_a_docstring():
    assert [
        name for name, path in modules().items() if ast.get_docstring(ast.parse(path.read_text())) is None
    ] == []


@pytest.mark.slow
def test_a_wheel_installs_and_predicts_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, ROOT],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("course_lib-*.whl")
    environment = tmp_path / "fresh"
    python = fresh_environment(environment)  # the pinned packages, without the editable install
    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "-q", wheel], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    script = textwrap.dedent(
        """
        import course_lib
        from pathlib import Path
        assert Path(course_lib.__file__).is_relative_to(Path(r"{environment}")), course_lib.__file__
        from course_lib.benchmark import BenchmarkGrid
        from course_lib.datasets import kang2018_cell_types, read_registry, synthetic_perturbation
        from course_lib.experiment import held_out_split
        from course_lib.metrics import evaluate
        from course_lib.models import MeanShiftBaseline, Scgen
        assert len(kang2018_cell_types()) == 13999 and "kang2018" in read_registry()
        assert BenchmarkGrid.from_profile("small").fraction == 0.15
        cells = synthetic_perturbation(n_cells=300, n_genes=80, seed=0)
        cells.X = cells.layers.pop("counts")
        train, query, truth = held_out_split(cells, "type_0", n_top_genes=40)
        model = Scgen(train, n_hidden=16, n_latent=4).train(n_epochs=2, verbose=False)
        prediction = model.predict(target="type_0")
        options = dict(n_bootstrap=0, n_ceiling_splits=2, n_components=5, verbose=False)
        scores = evaluate(query, truth, {{"scgen": prediction}}, **options)
        print("ok", len(scores))
        """
    ).format(environment=environment)
    run = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stderr[-3000:]
