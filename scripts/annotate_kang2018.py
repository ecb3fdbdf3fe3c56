#!/usr/bin/env python3
"""Annotate the 13,999 Kang 2018 cells and write ``course_lib/data/kang2018_cell_types.csv``.

Usage: ``python scripts/annotate_kang2018.py [--labels PATH]`` (about a minute on two cores).

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

When the published labels are available (``--labels``, else ``$COURSE_VALIDATION_LABELS``, else
``../shared/validation/kang2018_reference_labels.csv`` beside the checkout), the script then measures
how well the annotation agrees with them: it prints the agreement per type and the confusion tables,
and writes the confusion counts to ``data/annotation/kang2018_agreement.csv`` with a sidecar
(``.json``) that records the sha256 of the label file and of the cell-type table it measured. Those
two small files are committed, so that chapter 2 shows the measurement everywhere; the published
labels themselves stay out of the repository. They are read only after the cell-type table is
written, to measure it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from course_lib.annotation import (
    REFERENCE_COMPARISONS,
    agreement_of_confusion,
    annotate_cell_types,
    confusion_counts,
    confusion_from_counts,
    label_groups,
    read_reference_labels,
    reference_labels_path,
)
from course_lib.datasets import CELL_TYPE_TABLE, kang2018_counts, sha256sum

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "course_lib" / "data" / CELL_TYPE_TABLE
AGREEMENT = ROOT / "data" / "annotation" / "kang2018_agreement.csv"
DEFAULT_LABELS = ROOT.parent / "shared" / "validation" / "kang2018_reference_labels.csv"


def measure_agreement(cell_types: pd.Series, labels: Path) -> None:
    """Print the agreement with each published annotation and write the confusion counts with their
    provenance (the sha256 of the label file and of the cell-type table)."""
    counts = confusion_counts(cell_types, read_reference_labels(labels))
    AGREEMENT.parent.mkdir(parents=True, exist_ok=True)
    counts.to_csv(AGREEMENT, index=False)
    provenance = {
        "description": "Confusion counts of the course's cell types against published labels, written by "
        "scripts/annotate_kang2018.py; rows are (source, condition, reference label, course label).",
        "label_file": labels.name,
        "label_file_sha256": sha256sum(labels),
        "cell_type_table_sha256": sha256sum(OUTPUT),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    AGREEMENT.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for source, condition in REFERENCE_COMPARISONS:
            confusion = confusion_from_counts(counts, source=source, condition=condition)
            agreement = agreement_of_confusion(confusion)
            share, n_cells = agreement.loc["overall", ["agreement", "n_cells"]]
            print(f"\n== {condition} cells vs {source}: {share:.2%} of {n_cells:.0f} cells")
            print(agreement.to_string(formatters={"agreement": "{:.1%}".format}))
            print("\nconfusion (rows: reference, columns: this annotation)")
            print(confusion.to_string())
    print(f"\nwrote {AGREEMENT} and its .json provenance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=Path, help=f"published labels (default: {DEFAULT_LABELS})")
    args = parser.parse_args()
    labels = args.labels or reference_labels_path() or DEFAULT_LABELS
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
    if labels.exists():
        measure_agreement(table["cell_type"], labels)
    else:
        print(f"\nPublished labels not found at {labels}; the agreement was not measured (pass --labels).")


if __name__ == "__main__":
    main()
