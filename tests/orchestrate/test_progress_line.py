"""The console's progress line names a finished trial by its group (and seed), not its id."""

from __future__ import annotations

import yaml

from vrsearch.orchestrate.callbacks import ResultsCallback
from vrsearch.results import fragments, io


def _run(tmp_path, seeds, metas):
    (tmp_path / io.STUDY_FILE).write_text(
        yaml.safe_dump({"name": "s", "search": {"design": "ablation", "seeds": seeds}})
    )
    for tid, meta in metas.items():
        fragments.write_json(fragments.trial_dir(tmp_path, tid) / "meta.json", meta)
    cb = ResultsCallback(tmp_path, total=4, echo=lambda _: None)
    cb.done = 1
    return cb


def test_multi_seed_study_names_group_and_seed(tmp_path):
    # only seed 0's trials have started: the study file says there will be two seeds
    cb = _run(
        tmp_path,
        [0, 1],
        {
            "2d576_00000": {"group": "baseline", "arm": "baseline", "seed": 0},
            "2d576_00001": {"group": "no_nn", "arm": "no_nn", "seed": 0},
        },
    )
    line = cb.line("2d576_00001", "completed", 0.5, "")
    assert line.startswith("[1/4] no_nn · seed 0 completed: best val dice 0.5000 | ")
    assert "2d576" not in line


def test_single_seed_study_names_the_group_and_ids_only_when_needed(tmp_path):
    cb = _run(
        tmp_path,
        [0],
        {
            "a_00000": {"group": "k=5", "seed": 0},
            "a_00001": {"group": "k=5", "seed": 0},
            "a_00002": {"group": "k=10", "seed": 0},
        },
    )
    assert cb.line("a_00002", "stopped_early", None, "").startswith("[1/4] k=10 stopped_early: best val dice n/a")
    assert cb.line("a_00001", "completed", 0.25, "").startswith("[1/4] k=5 (a_00001) completed")
    # a trial that failed before writing its meta.json keeps its id
    assert cb.line("a_00009", "failed", None, "boom").startswith("[1/4] a_00009 failed (boom)")
