"""Trial names for people: group, seed when a run has several, trial id only when needed."""

from __future__ import annotations

import pandas as pd

from vrsearch.results.names import trial_names


def test_group_alone_when_one_seed():
    trials = pd.DataFrame({"trial_id": ["a_0", "a_1"], "group": ["baseline", "no_nn"], "seed": [0, 0]})
    assert trial_names(trials).to_dict() == {"a_0": "baseline", "a_1": "no_nn"}


def test_seed_added_when_the_run_has_several():
    trials = pd.DataFrame(
        {
            "trial_id": ["x1", "x2", "x3", "x4"],
            "group": ["baseline", "baseline", "no_nn", "no_nn"],
            "seed": [0.0, 1.0, 0.0, 1.0],
        }
    )
    assert trial_names(trials).tolist() == [
        "baseline · seed 0",
        "baseline · seed 1",
        "no_nn · seed 0",
        "no_nn · seed 1",
    ]


def test_trial_id_only_for_trials_that_would_share_a_name():
    # a search that proposed the same configuration twice; arm/cell fallbacks of older runs
    trials = pd.DataFrame(
        {
            "trial_id": ["s1", "s2", "s3", "s4"],
            "group": ["k=5", "k=5", "k=10", None],
            "arm": ["", "", "", "old_arm"],
            "seed": [0, 0, 0, 0],
        }
    )
    assert trial_names(trials).tolist() == ["k=5 (s1)", "k=5 (s2)", "k=10", "old_arm"]


def test_empty_frames():
    assert trial_names(pd.DataFrame()).empty
    assert trial_names(pd.DataFrame({"group": ["a"]})).empty
