"""A benchmark result as an RO-Crate: the table, the workflow, the inputs, the parameters and the run.

:func:`write_crate` packages a results table and its JSON sidecar (from the local runner or from the
workflow's merge) in a folder that follows the Workflow Run Crate profile
(https://w3id.org/ro/wfrun/workflow/0.5), with the ``rocrate`` library:

- the workflow (``workflow/Snakefile`` as the crate's main entity, its rules, schema and profiles, and
  ``config/``) with its language (Snakemake) and licence (MIT);
- the inputs: each data file with its sha256 and size; a file with a public record (the Kang 2018
  files) is referenced by it, any other input file is copied into the crate;
- the parameters: every field of the benchmark grid, as formal parameters of the workflow and their
  values in this run;
- the run: one ``CreateAction`` with the start of the first run and the end of the last one recorded
  in the sidecar, its inputs, parameters and outputs (the table and the sidecar, copied);
- the software: course_lib and every package version the sidecar records (and the workflow engine's);
- the people and their organisation: placeholders to fill in (or the values passed), and the
  licence of the results (CC-BY 4.0).

Every file in the crate carries its sha256 (:func:`check_crate` verifies them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from course_lib.benchmark.provenance import provenance_path
from course_lib.benchmark.runner import load_results
from course_lib.datasets import WheelSource, data_dir, fetch_wheel_members, sha256sum

WORKFLOW_RUN_PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
"""The profiles a results crate conforms to (permalink -> name)."""

RO_CRATE_VERSION = "1.1"
"""The RO-Crate specification the Workflow Run Crate profile 0.5 builds on."""

SHA256_TERM = "http://schema.org/sha256"
"""The term of a file's sha256 (schema.org's, as in RO-Crate 1.2 and later), added to the crate's context."""

ENCODINGS = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".md": "text/markdown",
}
"""Media types of the files a crate holds, by suffix (anything else: ``text/plain``)."""

BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"
"""The Bioschemas profile the main workflow follows."""

RESULTS_LICENCE = "https://spdx.org/licenses/CC-BY-4.0"
"""Licence of the results (the course's text and data licence)."""

CODE_LICENCE = "https://spdx.org/licenses/MIT"
"""Licence of the workflow and the package (the course's code licence)."""

PLACEHOLDER_AUTHOR = "<your name>"
"""The author's name in a crate until the user fills it in."""

PLACEHOLDER_ORGANISATION = "<your organisation>"
"""The organisation's name in a crate until the user fills it in."""

WORKFLOW_FOLDERS = ("workflow", "config", "profiles")
"""Folders of the repository that hold the workflow, its configuration and its profiles (copied)."""

MAIN_WORKFLOW = "workflow/Snakefile"
"""The workflow's entry point: the crate's main entity."""


RO_CRATE_CONTEXT = "https://w3id.org/ro/crate/1.1/context"
"""The JSON-LD context of an RO-Crate 1.1 crate."""

RO_CRATE_CONTEXT_SOURCE = WheelSource(
    requirement="rocrate==0.13.0",
    filename="rocrate-0.13.0-py3-none-any.whl",
    sha256="268e00d2ffe589507fbb65c75458a09834b563fad295cbf6e53b6f3d031f3443",
    members={
        "rocrate/data/ro-crate.jsonld": "bb5dd0a79ebd5a3b074e2faf96f437503234f8a4b8e84c7149de91eae0d2222a"
    },
)
"""Where :func:`validate_crate` gets the RO-Crate 1.1 context without the network: the copy inside the
last ``rocrate`` wheel that shipped it (newer ones ship the 1.3 context), fetched once and verified."""

VALIDATION_PROFILE = "workflow-run-crate-0.5"
"""The ``roc-validator`` profile a results crate is validated against."""


def parameter_type(value: Any) -> str:
    """The ``additionalType`` of a parameter value (Workflow Run Crate: Boolean, Integer, Float, Text)."""
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    return "Text"


def workflow_files(root: Path) -> list[Path]:
    """Every file of the workflow folders under ``root`` (no caches), relative to ``root``."""
    if not (root / MAIN_WORKFLOW).is_file():
        raise FileNotFoundError(
            f"no {MAIN_WORKFLOW} in {root}: pass the folder that holds workflow/ and config/ (the "
            "repository root)."
        )
    files = []
    for folder in WORKFLOW_FOLDERS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                files.append(path.relative_to(root))
    return files


def encoding(path: Path) -> str:
    """The media type of a file of the crate (:data:`ENCODINGS`)."""
    if path.suffix == ".h5ad":
        return "application/x-hdf5"
    return ENCODINGS.get(path.suffix, "text/plain")


def file_properties(path: Path, **properties: Any) -> dict[str, Any]:
    """A file entity's properties: ``properties`` plus its ``sha256``, ``contentSize`` and
    ``encodingFormat``."""
    return {
        "encodingFormat": encoding(path),
        **properties,
        "sha256": sha256sum(path),
        "contentSize": str(path.stat().st_size),
    }


def reference(entities: Sequence[Any]) -> dict[str, str] | list[dict[str, str]]:
    """A JSON-LD reference to ``entities``: one ``{"@id": ...}``, or a list of them for several."""
    references = [{"@id": entity.id} for entity in entities]
    return references[0] if len(references) == 1 else references


def run_span(provenance: Mapping[str, Any]) -> tuple[str, str]:
    """The start of the first run and the end of the last finished run of a sidecar."""
    runs = provenance.get("runs", [])
    finished = [run["finished"] for run in runs if run.get("finished")]
    if not finished:
        raise ValueError("the results' sidecar records no finished run: finish the benchmark first.")
    return min(run["started"] for run in runs), max(finished)


def check_inputs(provenance: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]]) -> None:
    """Raise unless every data file that the sidecar's last run records is among ``inputs`` with its hash."""
    recorded = provenance["runs"][-1].get("data_files_sha256", {})
    given = {record["name"]: record["sha256"] for record in inputs}
    wrong = sorted(name for name, digest in recorded.items() if given.get(name) != digest)
    if wrong:
        raise ValueError(
            f"the results were computed from data files {wrong}, which the inputs given lack or hold with "
            f"another sha256 (the sidecar records {[recorded[name] for name in wrong]}); pass the inputs of "
            "that run (--inputs)."
        )


def write_crate(
    results_path: str | Path,
    output: str | Path,
    *,
    inputs: Sequence[Mapping[str, Any]],
    workflow_root: str | Path = ".",
    author: str | None = None,
    orcid: str | None = None,
    organisation: str | None = None,
) -> Path:
    """Write the RO-Crate of the results table ``results_path`` into the new folder ``output``.

    Parameters
    ----------
    results_path
        A results CSV with its JSON sidecar (:func:`~course_lib.benchmark.load_results`).
    output
        The crate's folder; it must not exist yet.
    inputs
        The data files the table was computed from: records with ``name``, ``sha256``, ``bytes`` and
        ``path`` (copied into the crate) or ``uri`` (referenced), as
        :meth:`course_lib.benchmark.points.DataSource.input_files` returns them. They must include
        every file that the sidecar records, with the same hash.
    workflow_root
        The folder that holds ``workflow/`` and ``config/`` (the repository root).
    author, orcid, organisation
        The person who ran the benchmark (an ORCID URL identifies them) and their organisation;
        placeholders (:data:`PLACEHOLDER_AUTHOR`, :data:`PLACEHOLDER_ORGANISATION`) when left out.

    Returns
    -------
    pathlib.Path
        The crate's folder, holding ``ro-crate-metadata.json``.
    """
    results_path, output, root = Path(results_path), Path(output), Path(workflow_root)
    table = load_results(results_path)
    provenance = table.attrs["provenance"]
    started, finished = run_span(provenance)
    check_inputs(provenance, inputs)
    files = workflow_files(root)
    if output.exists():
        raise FileExistsError(f"{output} exists; choose a new folder for the crate (or delete it).")
    run = provenance["runs"][-1]

    crate = ROCrate(version=RO_CRATE_VERSION)
    crate.metadata.extra_terms["sha256"] = SHA256_TERM
    crate.name = f"Leave-one-cell-type-out benchmark: {results_path.name}"
    crate.description = provenance["description"]
    crate.root_dataset["license"] = {"@id": RESULTS_LICENCE}
    crate.datePublished = finished
    crate.root_dataset["conformsTo"] = [{"@id": profile} for profile in WORKFLOW_RUN_PROFILES]
    for profile, name in WORKFLOW_RUN_PROFILES.items():
        version = profile.rsplit("/", 1)[1]
        crate.add(ContextEntity(crate, profile, {"@type": "CreativeWork", "name": name, "version": version}))
    for licence, name in ((RESULTS_LICENCE, "CC-BY-4.0"), (CODE_LICENCE, "MIT")):
        crate.add(ContextEntity(crate, licence, {"@type": "CreativeWork", "name": name}))

    organisation_entity = crate.add(
        ContextEntity(
            crate,
            "#organisation",
            {"@type": "Organization", "name": organisation or PLACEHOLDER_ORGANISATION},
        )
    )
    person = crate.add(
        ContextEntity(
            crate,
            orcid or "#author",
            {
                "@type": "Person",
                "name": author or PLACEHOLDER_AUTHOR,
                "affiliation": {"@id": organisation_entity.id},
            },
        )
    )
    crate.root_dataset["author"] = {"@id": person.id}
    crate.root_dataset["publisher"] = {"@id": organisation_entity.id}

    versions = dict(run.get("versions", {}))
    engine = run.get("workflow", {})
    if engine.get("engine"):
        versions[engine["engine"]] = engine.get("version", "unknown")
    software = [
        crate.add(
            ContextEntity(
                crate,
                f"#software-{name}",
                {"@type": "SoftwareApplication", "name": name, "softwareVersion": str(number)},
            )
        )
        for name, number in versions.items()
    ]

    main = root / MAIN_WORKFLOW
    workflow = crate.add_workflow(
        main,
        dest_path=MAIN_WORKFLOW,
        main=True,
        lang="snakemake",
        lang_version=versions.get("snakemake"),
        properties=file_properties(
            main,
            name="Leave-one-cell-type-out benchmark (Snakemake)",
            license={"@id": CODE_LICENCE},
            version=str(versions.get("course_lib", "unknown")),
            encodingFormat="text/x-snakemake",
            conformsTo={"@id": BIOSCHEMAS_WORKFLOW},
        ),
    )
    workflow["softwareRequirements"] = reference(software)
    parts = [
        crate.add_file(root / path, dest_path=str(path), properties=file_properties(root / path))
        for path in files
        if str(path) != MAIN_WORKFLOW
    ]
    workflow["hasPart"] = reference(parts)

    def formal_parameter(name: str, kind: str, description: str):
        return crate.add(
            ContextEntity(
                crate,
                f"#param-{name}",
                {
                    "@type": "FormalParameter",
                    "name": name,
                    "additionalType": kind,
                    "description": description,
                    "conformsTo": {"@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"},
                },
            )
        )

    data_parameter = formal_parameter("data", "File", "The raw counts the benchmark reads.")
    input_entities = []
    for record in inputs:
        properties = {
            "@type": "File",
            "name": record["name"],
            "description": record.get("description", "an input data file"),
            "sha256": record["sha256"],
            "contentSize": str(record["bytes"]),
            "encodingFormat": encoding(Path(record["name"])),
            "exampleOfWork": {"@id": data_parameter.id},
        }
        properties.pop("@type")
        if record.get("uri"):  # a web-based data entity: named by its public record, not copied
            entity = crate.add_file(record["uri"], properties=properties)
        else:
            entity = crate.add_file(
                Path(record["path"]), dest_path=f"inputs/{record['name']}", properties=properties
            )
        input_entities.append(entity)
    data_parameter["workExample"] = reference(input_entities)

    grid_parameters, values = [data_parameter], []
    for name, value in run.get("grid", {}).items():
        parameter = formal_parameter(name, parameter_type(value), f"BenchmarkGrid.{name}")
        text = value if isinstance(value, str | bool | int | float) else json.dumps(value, sort_keys=True)
        entity = crate.add(
            ContextEntity(
                crate,
                f"#value-{name}",
                {
                    "@type": "PropertyValue",
                    "name": name,
                    "value": "null" if text is None else text,
                    "exampleOfWork": {"@id": parameter.id},
                },
            )
        )
        parameter["workExample"] = {"@id": entity.id}
        grid_parameters.append(parameter)
        values.append(entity)

    results = []
    for path, name, description in (
        (results_path, "results", "The results table: one row per grid point and metric."),
        (provenance_path(results_path), "provenance", "The table's provenance: data setup, runs, versions."),
    ):
        parameter = formal_parameter(name, "File", description)
        entity = crate.add_file(
            path,
            dest_path=path.name,
            properties=file_properties(path, exampleOfWork={"@id": parameter.id}),
        )
        parameter["workExample"] = {"@id": entity.id}
        results.append((parameter, entity))
    workflow["input"] = [{"@id": parameter.id} for parameter in grid_parameters]
    workflow["output"] = [{"@id": parameter.id} for parameter, _ in results]

    action = crate.add_action(
        workflow,
        identifier="#benchmark-run",
        object=[*input_entities, *values],
        result=[entity for _, entity in results],
        properties={
            "@type": "CreateAction",
            "name": f"Run of the benchmark that wrote {results_path.name}",
            "description": f"{len(provenance['runs'])} run(s); the last: {run.get('command', 'unknown')}",
            "startTime": started,
            "endTime": finished,
            "agent": {"@id": person.id},
            "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
        },
    )
    crate.root_dataset["mentions"] = {"@id": action.id}
    # Written into a hidden folder beside the crate and renamed when complete: a crate folder that exists
    # is a whole crate (a workflow that is killed meanwhile takes it as finished only if it is).
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    readme = staging.with_name(f"{staging.name}.README.md")
    readme.write_text(crate_readme(results_path, provenance, started, finished))
    try:
        crate.add_file(
            readme,
            dest_path="README.md",
            properties=file_properties(readme, about={"@id": "./"}, encodingFormat="text/markdown"),
        )
        crate.write(staging)
        os.replace(staging, output)
    finally:
        readme.unlink()
        shutil.rmtree(staging, ignore_errors=True)
    return output


def crate_readme(results_path: Path, provenance: Mapping[str, Any], started: str, finished: str) -> str:
    """The crate's README.md: what it holds and what to fill in."""
    return "\n".join(
        [
            f"# Leave-one-cell-type-out benchmark: {results_path.name}",
            "",
            provenance["description"],
            "",
            f"Computed from {started} to {finished} by the Snakemake workflow in `workflow/`",
            "(configuration in `config/`) or by its local runner `python -m course_lib.benchmark`, which",
            f"computes the same rows. `{results_path.name}` is the table,",
            f"`{provenance_path(results_path).name}` its provenance; `inputs/` holds the input files",
            "that have no public record (the others are named by it, with their sha256).",
            "`ro-crate-metadata.json` describes all of it (Workflow Run Crate profile).",
            "",
            f"Before you publish the crate, replace the placeholders {PLACEHOLDER_AUTHOR!r} and",
            f"{PLACEHOLDER_ORGANISATION!r} in `ro-crate-metadata.json` (or rebuild it with --author,",
            "--orcid and --organisation).",
            "",
        ]
    )


def check_crate(folder: str | Path) -> list[str]:
    """Every file entity of the crate in ``folder``, checked: it exists and has the stated sha256.

    Returns the ids of the files checked; raises ``ValueError`` for a missing file or a wrong hash.
    Entities with an absolute URI (inputs referenced by their public record) are not files of the crate.
    """
    folder = Path(folder)
    graph = json.loads((folder / "ro-crate-metadata.json").read_text())["@graph"]
    checked = []
    for entity in graph:
        types = entity.get("@type", [])
        types = [types] if isinstance(types, str) else types
        identifier = entity["@id"]
        if "File" not in types or "://" in identifier:
            continue
        path = folder / identifier
        if not path.is_file():
            raise ValueError(f"the crate lists {identifier}, which is not in {folder}.")
        if "sha256" not in entity:
            raise ValueError(f"the crate lists {identifier} without a sha256.")
        if sha256sum(path) != entity["sha256"]:
            raise ValueError(f"{identifier} in {folder} does not have the sha256 the crate states.")
        checked.append(identifier)
    return checked


def validate_crate(folder: str | Path, *, severity: str = "REQUIRED") -> list[str]:
    """Validate the crate in ``folder`` with ``roc-validator`` against :data:`VALIDATION_PROFILE`.

    The validator runs offline: the one remote document it needs, the RO-Crate 1.1 JSON-LD context, is
    taken from :data:`RO_CRATE_CONTEXT_SOURCE` (fetched once into :func:`course_lib.datasets.data_dir`,
    verified) and put into the validator's HTTP cache there.

    Returns
    -------
    list of str
        One line per issue at ``severity`` (``"REQUIRED"``, ``"RECOMMENDED"`` or ``"OPTIONAL"``) or
        above; empty for a valid crate.
    """
    import io

    import requests
    import requests_cache
    import urllib3
    from rocrate_validator import models, services

    folder = Path(folder)
    cache = data_dir() / "ro-crate"
    (context,) = fetch_wheel_members(RO_CRATE_CONTEXT_SOURCE, cache).values()
    body = context.read_bytes()
    # The validator reads remote documents through this HTTP cache; offline, it only looks them up there.
    # The context is stored as the response a server would have sent for it.
    session = requests_cache.CachedSession(str(cache / "validator-http-cache"), expire_after=-1)
    try:
        response = requests.Response()
        response.status_code, response.url, response._content = 200, RO_CRATE_CONTEXT, body
        response.headers["Content-Type"] = "application/ld+json"
        response.request = requests.Request("GET", RO_CRATE_CONTEXT).prepare()
        response.raw = urllib3.HTTPResponse(
            body=io.BytesIO(body), status=200, headers=dict(response.headers), request_url=RO_CRATE_CONTEXT
        )
        session.cache.save_response(response)
    finally:
        session.close()
    settings = services.ValidationSettings(
        rocrate_uri=str(folder.resolve()),
        profile_identifier=VALIDATION_PROFILE,
        requirement_severity=models.Severity[severity],
        offline=True,
        cache_path=str(cache / "validator-http-cache"),
    )
    result = services.validate(settings)
    return [
        f"{issue.severity.name} {issue.check.identifier}: {issue.message} ({issue.violatingEntity})"
        for issue in result.get_issues()
    ]
