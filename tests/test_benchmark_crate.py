"""The RO-Crate of a results table: valid against the Workflow Run Crate profile, every file present with
its stated sha256, inputs, parameters, versions, dates and placeholders for the people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL_GRID

from course_lib.benchmark import cli, run_benchmark
from course_lib.benchmark.crate import (
    PLACEHOLDER_AUTHOR,
    PLACEHOLDER_ORGANISATION,
    WORKFLOW_RUN_PROFILES,
    check_crate,
    validate_crate,
    write_crate,
)
from course_lib.benchmark.points import DataSource

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table(counts, tmp_path_factory):
    """A one-type results table of the synthetic data, and the input files it was computed from."""
    folder = tmp_path_factory.mktemp("crate")
    counts.write_h5ad(folder / "synthetic.h5ad")
    inputs = DataSource.parse(folder / "synthetic.h5ad").input_files()
    grid = {**SMALL_GRID, "cell_types": ["type_0"]}
    data_files = {record["name"]: record["sha256"] for record in inputs}
    run_benchmark(counts, grid, results_path=folder / "table.csv", data_files=data_files, verbose=False)
    return folder / "table.csv", inputs


def graph_of(crate: Path) -> dict[str, dict]:
    return {
        entity["@id"]: entity
        for entity in json.loads((crate / "ro-crate-metadata.json").read_text())["@graph"]
    }


def test_the_crate_is_a_valid_workflow_run_crate_and_every_file_has_its_hash(table, tmp_path):
    results, inputs = table
    crate = write_crate(results, tmp_path / "crate", inputs=inputs, workflow_root=ROOT)
    assert validate_crate(crate) == []
    listed = check_crate(crate)
    assert {
        "workflow/Snakefile",
        "config/config.yaml",
        "table.csv",
        "table.json",
        "inputs/synthetic.h5ad",
    } <= set(listed)
    assert "workflow/schemas/config.schema.yaml" in listed and "README.md" in listed
    graph = graph_of(crate)
    root = graph["./"]
    assert {reference["@id"] for reference in root["conformsTo"]} == set(WORKFLOW_RUN_PROFILES)
    assert root["mainEntity"] == {"@id": "workflow/Snakefile"} and root["license"]["@id"].endswith(
        "CC-BY-4.0"
    )
    action = graph["#benchmark-run"]
    provenance = json.loads(results.with_suffix(".json").read_text())
    assert action["startTime"] == provenance["runs"][0]["started"]
    assert action["endTime"] == provenance["runs"][0]["finished"]
    assert {"@id": "table.csv"} in action["result"] and {"@id": "inputs/synthetic.h5ad"} in action["object"]
    assert graph["inputs/synthetic.h5ad"]["sha256"] == inputs[0]["sha256"]
    values = {
        graph[reference["@id"]]["name"]: graph[reference["@id"]].get("value")
        for reference in action["object"]
    }
    assert values["n_top_genes"] == 60 and json.loads(values["seeds"]) == [0]
    software = {
        graph[ref["@id"]]["name"]: graph[ref["@id"]]["softwareVersion"]
        for ref in graph["workflow/Snakefile"]["softwareRequirements"]
    }
    assert software["course_lib"] == "0.1.0" and "torch" in software
    person = graph[root["author"]["@id"]]
    assert person["name"] == PLACEHOLDER_AUTHOR
    assert graph[person["affiliation"]["@id"]]["name"] == PLACEHOLDER_ORGANISATION


def test_a_changed_file_fails_the_check(table, tmp_path):
    results, inputs = table
    crate = write_crate(results, tmp_path / "crate", inputs=inputs, workflow_root=ROOT)
    (crate / "table.csv").write_text("changed\n")
    with pytest.raises(ValueError, match="table.csv in .* does not have the sha256"):
        check_crate(crate)
    (crate / "table.csv").unlink()
    with pytest.raises(ValueError, match="lists table.csv, which is not in"):
        check_crate(crate)


def test_the_kang_inputs_are_referenced_by_their_public_record(table, tmp_path):
    results, inputs = table
    external = [{**inputs[0], "uri": "https://example.org/data#synthetic.h5ad"}]
    crate = write_crate(
        results,
        tmp_path / "crate",
        inputs=external,
        workflow_root=ROOT,
        author="A. Person",
        orcid="https://orcid.org/0000-0002-1825-0097",
        organisation="A University",
    )
    graph = graph_of(crate)
    assert not (crate / "inputs").exists() and graph[external[0]["uri"]]["sha256"] == inputs[0]["sha256"]
    assert graph["https://orcid.org/0000-0002-1825-0097"]["name"] == "A. Person"
    assert validate_crate(crate) == []


def test_inputs_with_other_hashes_and_an_existing_folder_are_refused(table, tmp_path):
    results, inputs = table
    with pytest.raises(ValueError, match="synthetic.h5ad"):
        write_crate(
            results, tmp_path / "crate", inputs=[{**inputs[0], "sha256": "0" * 64}], workflow_root=ROOT
        )
    (tmp_path / "crate").mkdir()
    with pytest.raises(FileExistsError, match="exists"):
        write_crate(results, tmp_path / "crate", inputs=inputs, workflow_root=ROOT)
    with pytest.raises(FileNotFoundError, match="no workflow/Snakefile"):
        write_crate(results, tmp_path / "other", inputs=inputs, workflow_root=tmp_path)


def test_the_command_line_builds_a_crate(table, tmp_path, capsys):
    results, inputs = table
    listing = tmp_path / "inputs.json"
    listing.write_text(json.dumps({"files": inputs}))
    arguments = ["crate", "--results", str(results), "--inputs", str(listing), "--workflow", str(ROOT)]
    cli.main([*arguments, "--output", str(tmp_path / "crate")])
    assert "RO-Crate in" in capsys.readouterr().out and check_crate(tmp_path / "crate")


def test_the_committed_crate_holds_the_committed_table_and_its_sidecar():
    """data/benchmark/kang2018_loto.crate is regenerated with the table: its files have their hashes,
    and its table and sidecar are byte for byte the committed ones."""
    committed = ROOT / "data" / "benchmark"
    crate = committed / "kang2018_loto.crate"
    checked = check_crate(crate)
    for name in ("kang2018_loto.csv", "kang2018_loto.json"):
        assert name in checked
        assert (crate / name).read_bytes() == (committed / name).read_bytes(), f"{name} of the crate is stale"
