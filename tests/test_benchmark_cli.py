"""The benchmark's command line: its options, a run, and bad input before any work."""

from __future__ import annotations

import pytest

from course_lib.benchmark import cli, load_results


def test_command_line_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--models", "--cell-types", "--seeds", "--variants", "--epochs", "--output", "--profile"):
        assert option in usage


def test_command_line_runs_a_grid_and_prints_the_summary(counts, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "kang2018", lambda: counts)
    output = tmp_path / "cli.csv"
    arguments = ["--models", "identity", "--cell-types", "type_0", "--variants", "imbalanced", "--quiet"]
    arguments += ["--min-cells", "40", "--n-top-genes", "60", "--output", str(output), "--profile", "small"]
    cli.main(arguments)
    results = load_results(output)
    assert set(results["model"]) == {"identity", "mean_shift", "noise_ceiling"}
    assert set(results["variant"]) == {"imbalanced"}
    (record,) = results.attrs["provenance"]["runs"]
    assert record["grid"]["fraction"] == 0.15 and record["grid"]["n_epochs"] == 2
    assert "kang2018_cell_types.csv" in record["data_files_sha256"]
    assert "r2_mean_all" in capsys.readouterr().out


def test_a_negative_seed_is_refused_before_the_data_are_read(monkeypatch, capsys):
    monkeypatch.setattr(cli, "kang2018", lambda: pytest.fail("the data were read"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--seeds", "0", "-1"])
    assert exit_info.value.code == 2 and "non-negative" in capsys.readouterr().err


def test_default_outputs_are_relative_to_the_working_directory():
    assert str(cli.results_path_for(None)) == "data/benchmark/kang2018_loto.csv"
    assert cli.results_path_for("small").name == "kang2018_loto_small.csv"
