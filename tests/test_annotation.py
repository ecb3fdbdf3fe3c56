"""Marker-based annotation: agreement and confusion helpers, the pipeline, and the committed Kang table."""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from course_lib import annotation
from course_lib.annotation import (
    agreement_by_type,
    agreement_of_confusion,
    align_conditions,
    annotate_cell_types,
    condition_r2,
    confusion_counts,
    confusion_from_counts,
    confusion_table,
    label_groups,
    marker_scores,
    read_reference_labels,
    reference_labels_path,
    reference_subset,
)
from course_lib.datasets import CELL_TYPES, kang2018_cell_types, kang2018_counts

ROOT = Path(__file__).resolve().parents[1]
VALIDATION_LABELS = ROOT.parent / "shared" / "validation" / "kang2018_reference_labels.csv"
"""Where the published labels lie beside a checkout on the machines that have them."""
MIN_AGREEMENT = {("kang2018_published", "control"): 0.92, ("seurat_ifnb_2800", "stimulated"): 0.90}

PREDICTED = pd.Series(
    {"a": "B cells", "b": "B cells", "c": "NK cells", "d": "CD4 T cells", "e": "NK cells", "f": "NK cells"}
)
REFERENCE = pd.Series(
    {"a": "B cells", "b": "NK cells", "c": "NK cells", "d": "CD4 T cells", "f": "Platelets"}
)


def test_agreement_by_type_counts_reference_cells_only():
    table = agreement_by_type(PREDICTED, REFERENCE)
    assert list(table.index) == ["CD4 T cells", "B cells", "NK cells", "Platelets", "overall"]
    assert table["n_cells"].tolist() == [1, 1, 2, 1, 5]
    assert table["n_agree"].tolist() == [1, 1, 1, 0, 3]
    np.testing.assert_allclose(table["agreement"], [1.0, 1.0, 0.5, 0.0, 0.6])


def test_agreement_needs_a_prediction_for_every_reference_cell():
    with pytest.raises(KeyError, match="1 reference cells have no predicted label"):
        agreement_by_type(PREDICTED.drop("a"), REFERENCE)


def test_confusion_table_has_every_label_on_both_axes():
    table = confusion_table(PREDICTED, REFERENCE)
    labels = ["CD4 T cells", "B cells", "NK cells", "Platelets"]
    assert list(table.index) == labels and list(table.columns) == labels
    expected = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]]
    np.testing.assert_array_equal(table.to_numpy(), expected)
    assert np.trace(table.to_numpy()) == agreement_by_type(PREDICTED, REFERENCE).loc["overall", "n_agree"]


def test_condition_r2_is_the_share_of_variance_between_conditions():
    x = np.array([[0, 1, 1], [0, 3, 1], [2, 1, 1], [2, 3, 1]], dtype=np.float32)
    conditions = ["control", "control", "stimulated", "stimulated"]
    adata = ad.AnnData(x, obs=pd.DataFrame({"condition": conditions}, index=list("abcd")))
    np.testing.assert_allclose(condition_r2(adata), [1.0, 0.0, 0.0])


def test_marker_scores_and_labels_of_hand_made_groups():
    # Groups A, B, C; genes m1 (marker of X), m2 and m3 (markers of Y), m4 (marker of Z, a subtype of X).
    x = (
        np.array([[2, 0, 0, 0], [2, 0, 0, 0], [0, 4, 1, 0], [0, 2, 1, 0], [1, 0, 0, 3]], dtype=np.float32)
        * 0.9
    )
    obs = pd.DataFrame(
        {"group": pd.Categorical(["A", "A", "B", "B", "C"], ["A", "B", "C"])}, index=list("abcde")
    )
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=["m1", "m2", "m3", "m4"]))
    markers = {"X": ("m1",), "Y": ("m2", "m3"), "Z": ("m4",)}
    scores = marker_scores(adata, groupby="group", markers=markers)
    expected = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]]
    np.testing.assert_allclose(scores.to_numpy(), expected)
    assert label_groups(scores, subpopulations={"Z": "X"}).to_dict() == {"A": "X", "B": "Y", "C": "X"}
    with pytest.raises(KeyError, match="m9"):
        marker_scores(adata, groupby="group", markers={"X": ("m9",)})


def test_align_conditions_removes_a_type_specific_condition_shift():
    rng = np.random.default_rng(0)
    n = 200
    cell_type = np.repeat([0, 1], n)
    stimulated = np.tile(np.repeat([False, True], n // 2), 2)
    centres = np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    shifts = np.array([[0.0, 2.0, 0.0], [0.0, -2.0, 1.0]])  # each type moves its own way
    embedding = centres[cell_type] + stimulated[:, None] * shifts[cell_type] + rng.normal(0, 0.3, (2 * n, 3))
    adata = ad.AnnData(
        np.zeros((2 * n, 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"condition": np.where(stimulated, "stimulated", "control")},
            index=[f"c{i}" for i in range(2 * n)],
        ),
        obsm={"X_pca": embedding},
    )
    aligned = align_conditions(adata, n_clusters=10).obsm["X_shared"]
    for t in (0, 1):
        before = embedding[(cell_type == t) & stimulated].mean(0) - embedding[
            (cell_type == t) & ~stimulated
        ].mean(0)
        after = aligned[(cell_type == t) & stimulated].mean(0) - aligned[(cell_type == t) & ~stimulated].mean(
            0
        )
        assert np.linalg.norm(after) < 0.2 * np.linalg.norm(before)
    gap = np.linalg.norm(aligned[cell_type == 0].mean(0) - aligned[cell_type == 1].mean(0))
    assert gap > 5  # the types stay apart


def _synthetic_pbmc_counts(seed: int = 0) -> tuple[ad.AnnData, np.ndarray, dict[str, tuple[str, ...]]]:
    """Counts of three populations in two conditions; stimulation induces two genes in every cell.

    Each population expresses a programme of six genes, the first two of which serve as its markers.
    Returns the counts, the true population of every cell and the markers.
    """
    rng = np.random.default_rng(seed)
    populations = ["B cells", "NK cells", "CD14+ Monocytes"]
    programmes = [[f"{name.split()[0]}_{i}" for i in range(6)] for name in populations]
    markers = {name: tuple(genes[:2]) for name, genes in zip(populations, programmes, strict=True)}
    genes = [g for programme in programmes for g in programme] + ["ISG15", "IFIT1", "MALAT1"]
    genes += [f"noise_{i}" for i in range(20)]
    n_cells = 450
    truth = np.repeat(populations, n_cells // 3)
    stimulated = rng.random(n_cells) < 0.5
    rate = np.full((n_cells, len(genes)), 0.3)
    for i, name in enumerate(populations):
        rate[truth == name, 6 * i : 6 * i + 6] = 10.0
    rate[stimulated, 18:20] = 30.0
    rate[:, 20] = 60.0  # one abundant gene, as in real counts
    counts = rng.poisson(rate * rng.uniform(0.7, 1.3, (n_cells, 1))).astype(np.float32)
    obs = pd.DataFrame(
        {"condition": np.where(stimulated, "stimulated", "control")},
        index=[f"cell{i:03d}" for i in range(n_cells)],
    )
    return ad.AnnData(counts, obs=obs, var=pd.DataFrame(index=genes)), truth, markers


def _in_canonical_order(table: pd.DataFrame) -> bool:
    """True when the rows are sorted by condition, then barcode."""
    order = table.reset_index().sort_values(["condition", "barcode"]).index
    return bool((order == np.arange(len(table))).all())


@pytest.mark.slow  # about 20 s, most of it compiling scanpy's neighbour-graph code on first use
def test_annotate_cell_types_recovers_marker_populations_whatever_the_order():
    counts, truth, markers = _synthetic_pbmc_counts()
    options = {"markers": markers, "n_top_genes": 20, "n_pcs": 5, "n_neighbors": 10, "resolution": 0.3}
    annotated = annotate_cell_types(counts, **options)
    table = annotated.obs[["condition", "cluster", "cell_type"]]
    assert set(table.index) == set(counts.obs_names) and _in_canonical_order(table.rename_axis("barcode"))
    predicted = table["cell_type"].reindex(counts.obs_names).to_numpy()
    assert (predicted == truth).mean() > 0.95
    assert "IFIT1" in annotated.uns["condition_response_genes"]  # induced in every stimulated cell
    assert set(annotated.var_names) >= {gene for pair in markers.values() for gene in pair}
    assert {"X_pca", "X_shared"} <= set(annotated.obsm) and annotated.uns["marker_scores"].shape[1] == 3
    shuffled = counts[np.random.default_rng(1).permutation(counts.n_obs)].copy()
    pd.testing.assert_frame_equal(annotate_cell_types(shuffled, **options).obs[table.columns], table)


def test_annotate_cell_types_rejects_normalised_data():
    counts, _, markers = _synthetic_pbmc_counts()
    counts.X = np.log1p(counts.X / 10)
    with pytest.raises(ValueError, match="raw counts"):
        annotate_cell_types(counts, markers=markers)


def test_reference_labels_path_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(annotation.REFERENCE_LABELS_ENV, raising=False)
    assert reference_labels_path() is None  # the library assumes no checkout and no labels
    monkeypatch.setenv(annotation.REFERENCE_LABELS_ENV, str(tmp_path / "labels.csv"))
    assert reference_labels_path() == tmp_path / "labels.csv"
    with pytest.raises(FileNotFoundError, match="set COURSE_VALIDATION_LABELS"):
        read_reference_labels()


def test_reference_subset_names_the_known_sources():
    references = pd.DataFrame(
        {"condition": ["control"], "reference_label": ["B cells"], "source": ["s1"]}, index=["a"]
    )
    assert reference_subset(references, source="s1", condition="control").to_dict() == {"a": "B cells"}
    with pytest.raises(ValueError, match="s1"):
        reference_subset(references, source="s2", condition="control")


def test_committed_table_labels_every_kang_cell_with_the_eight_types():
    table = kang2018_cell_types()
    assert len(table) == 13_999 and table.index.is_unique
    assert list(table.columns) == ["condition", "cell_type"]
    assert table["condition"].value_counts().to_dict() == {"stimulated": 7_451, "control": 6_548}
    assert set(table["cell_type"]) == set(CELL_TYPES)
    assert _in_canonical_order(table)


def test_confusion_counts_round_trip_to_the_confusion_tables():
    references = pd.DataFrame(
        {"condition": "control", "reference_label": REFERENCE.to_numpy(), "source": "s1"},
        index=REFERENCE.index,
    )
    counts = confusion_counts(PREDICTED, references, comparisons=[("s1", "control")])
    assert set(counts.columns) == {"source", "condition", "reference", "predicted", "n_cells"}
    assert counts["n_cells"].sum() == len(REFERENCE) and (counts["n_cells"] > 0).all()
    pd.testing.assert_frame_equal(
        confusion_from_counts(counts, source="s1", condition="control"), confusion_table(PREDICTED, REFERENCE)
    )
    pd.testing.assert_frame_equal(
        agreement_of_confusion(confusion_table(PREDICTED, REFERENCE)), agreement_by_type(PREDICTED, REFERENCE)
    )


def test_the_committed_measurement_is_of_the_committed_labels_and_agrees_enough():
    counts = pd.read_csv(ROOT / "data" / "annotation" / "kang2018_agreement.csv")
    measured = json.loads((ROOT / "data" / "annotation" / "kang2018_agreement.json").read_text())
    table = files("course_lib") / "data" / "kang2018_cell_types.csv"
    assert measured["cell_type_table_sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    for (source, condition), minimum in MIN_AGREEMENT.items():
        confusion = confusion_from_counts(counts, source=source, condition=condition)
        overall = agreement_of_confusion(confusion).loc["overall", "agreement"]
        assert overall >= minimum, f"{condition} vs {source}: {overall:.1%} < {minimum:.0%}"


def test_the_committed_measurement_is_reproduced_from_the_published_labels():
    path = reference_labels_path() or VALIDATION_LABELS
    if not path.exists():
        pytest.skip(
            "the published labels are not part of the course (set COURSE_VALIDATION_LABELS to measure)"
        )
    measured = json.loads((ROOT / "data" / "annotation" / "kang2018_agreement.json").read_text())
    assert measured["label_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    counts = confusion_counts(kang2018_cell_types()["cell_type"], read_reference_labels(path))
    committed = pd.read_csv(ROOT / "data" / "annotation" / "kang2018_agreement.csv")
    pd.testing.assert_frame_equal(counts.reset_index(drop=True), committed, check_dtype=False)


@pytest.mark.slow
def test_annotation_script_reproduces_the_committed_table():
    table = annotate_cell_types(kang2018_counts()).obs  # about a minute on two cores
    committed = kang2018_cell_types()
    assert table.index.equals(committed.index)
    assert (table["condition"] == committed["condition"]).all()
    assert (table["cell_type"] == committed["cell_type"]).all()
