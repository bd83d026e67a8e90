"""Workdir JSON files are strict JSON and round-trip."""

import json
import math

from shared import workdir as workdir_lib


def test_write_json_round_trips_and_writes_non_finite_as_null(tmp_path):
    summary = {
        "accuracy": 0.975,
        "steps_per_second": math.nan,  # a resumed run with no step left to time
        "curve": [1.0, math.inf, -math.inf, 2.5],
        "nested": {"loss": float("nan"), "steps": 3},
    }
    path = workdir_lib.write_json(str(tmp_path), "summary.json", summary)
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text

    def refuse(constant):
        raise ValueError(constant)

    loaded = json.loads(text, parse_constant=refuse)
    assert loaded["accuracy"] == 0.975
    assert loaded["steps_per_second"] is None
    assert loaded["curve"] == [1.0, None, None, 2.5]
    assert loaded["nested"] == {"loss": None, "steps": 3}
    assert workdir_lib.read_json(str(tmp_path), "summary.json") == loaded
