"""The obs-column conventions as one value object."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.keys import DEFAULT_KEYS, ObsKeys


def test_the_defaults_are_the_course_names():
    assert DEFAULT_KEYS.as_dict() == {
        "condition": "condition",
        "cell_type": "cell_type",
        "control": "control",
        "stimulated": "stimulated",
        "predicted": "predicted",
    }
    assert ObsKeys.from_dict(DEFAULT_KEYS.as_dict()) == DEFAULT_KEYS


def test_masks_read_the_named_columns(synthetic):
    keys = ObsKeys(condition="treatment", cell_type="label")
    renamed = synthetic.copy()
    renamed.obs = renamed.obs.rename(columns={"condition": "treatment", "cell_type": "label"})
    np.testing.assert_array_equal(
        keys.is_control(renamed), (synthetic.obs["condition"] == "control").to_numpy()
    )
    np.testing.assert_array_equal(
        keys.is_stimulated(renamed), (synthetic.obs["condition"] == "stimulated").to_numpy()
    )
    np.testing.assert_array_equal(
        keys.is_type(renamed, "type_1"), (synthetic.obs["cell_type"] == "type_1").to_numpy()
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"control": "x", "stimulated": "x"}, "labels must differ"),
        ({"condition": "cell_type"}, "different columns"),
        ({"predicted": ""}, "non-empty strings"),
        ({"condition": 3}, "non-empty strings"),
    ],
)
def test_inconsistent_keys_are_refused(fields, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ObsKeys(**fields)
