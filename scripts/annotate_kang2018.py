#!/usr/bin/env python3
"""Annotate the 13,999 Kang 2018 cells and write ``data/kang2018_cell_types.csv``.

Usage: ``python scripts/annotate_kang2018.py`` (about a minute on two cores).

The method (:func:`course_lib.annotation.annotate_cell_types`) uses nothing but the raw counts and
canonical marker genes:

- counts per 10,000 and ``log1p``;
- a representation shared by control and stimulated cells: highly variable genes chosen within each
  condition, without the interferon-stimulated genes whose condition explains at least 20% of their
  variance, plus the marker genes; scaled; 30 principal components; then a compact Harmony
  (soft clusters kept mixed across conditions, and per cluster the condition offset regressed out),
  so each cell type loses its own interferon shift instead of splitting in two;
- Leiden clusters (resolution 0.8) of a 15-nearest-neighbour graph built across both conditions;
- every cluster named after the population whose canonical markers it expresses most (each marker's
  cluster mean relative to its highest cluster mean, averaged per population; plasmacytoid dendritic
  cells are scored on LILRA4/IL3RA and reported as dendritic cells).

All random steps are seeded. The table lists every cell (``barcode, condition, cell_type``), controls
first, each condition by barcode.

When the published labels are available (``$COURSE_VALIDATION_LABELS``, by default
``../shared/validation/kang2018_reference_labels.csv`` beside the checkout), the script then prints how
well the annotation agrees with them, overall and per type, and the confusion tables. They are read
only after the table is written, to measure it.
"""

from __future__ import annotations

import time

import pandas as pd

from course_lib.annotation import (
    REFERENCE_COMPARISONS,
    REFERENCE_LABELS_ENV,
    agreement_by_type,
    annotate_cell_types,
    confusion_table,
    label_groups,
    read_reference_labels,
    reference_labels_path,
    reference_subset,
)
from course_lib.datasets import REPO_DATA, kang2018_counts

OUTPUT = REPO_DATA / "kang2018_cell_types.csv"


def report_agreement(cell_types: pd.Series) -> None:
    """Print the agreement with each published annotation, per type, and its confusion table."""
    path = reference_labels_path()
    if not path.exists():
        print(f"\nValidation labels not found at {path}; set {REFERENCE_LABELS_ENV} to measure agreement.")
        return
    references = read_reference_labels(path)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for source, condition in REFERENCE_COMPARISONS:
            reference = reference_subset(references, source=source, condition=condition)
            agreement = agreement_by_type(cell_types, reference)
            share, n_cells = agreement.loc["overall", ["agreement", "n_cells"]]
            print(f"\n== {condition} cells vs {source}: {share:.2%} of {n_cells:.0f} cells")
            print(agreement.to_string(formatters={"agreement": "{:.1%}".format}))
            print("\nconfusion (rows: reference, columns: this annotation)")
            print(confusion_table(cell_types, reference).to_string())


def main() -> None:
    start = time.perf_counter()
    annotated = annotate_cell_types(kang2018_counts())
    table = annotated.obs[["condition", "cell_type"]]
    table.to_csv(OUTPUT, index_label="barcode")
    print(f"wrote {OUTPUT} ({len(table)} cells) in {time.perf_counter() - start:.0f} s")
    print(f"excluded interferon-response genes: {', '.join(annotated.uns['condition_response_genes'])}")
    scores = annotated.uns["marker_scores"]
    clusters = scores.round(2).assign(
        n_cells=annotated.obs["cluster"].value_counts(), cell_type=label_groups(scores)
    )
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(f"\nmarker scores per cluster\n{clusters.to_string()}\n")
        print(pd.crosstab(table["cell_type"], table["condition"], margins=True).to_string())
    report_agreement(table["cell_type"])


if __name__ == "__main__":
    main()
