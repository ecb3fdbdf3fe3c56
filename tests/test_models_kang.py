"""Real data: on subsampled Kang 2018 cells, scGen learns a response that the identity baseline lacks."""

from __future__ import annotations

import pytest

from course_lib import metrics
from course_lib.datasets import kang2018
from course_lib.models import IdentityBaseline, Scgen
from course_lib.preprocessing import holdout_mask, preprocess, subsample

TARGET = "CD4 T cells"


@pytest.mark.slow
def test_scgen_beats_identity_on_delta_correlation_for_held_out_cd4_t_cells():
    counts = subsample(kang2018(), 0.3, seed=0)
    hidden = holdout_mask(counts, TARGET)
    data = preprocess(counts, fit_on=~hidden, n_top_genes=2000)
    train, stim = data[~hidden].copy(), data[hidden].copy()
    ctrl = train[(train.obs["cell_type"] == TARGET) & (train.obs["condition"] == "control")].copy()

    scgen = Scgen(train, seed=0, target=TARGET).train(n_epochs=5, verbose=False)
    predictions = {
        "scgen": scgen.predict(),
        "identity": IdentityBaseline(train, target=TARGET).predict(),
    }
    scores = metrics.evaluate(ctrl, stim, predictions, n_bootstrap=20, verbose=False)
    delta = scores[scores["metric"] == "delta_pearson_top100"].set_index("model")["value"]
    assert delta["scgen"] > delta["identity"] + 0.3, delta
