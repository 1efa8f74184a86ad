"""Engine: determinism, bit-exact resume, divergence, the selection protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from vrsearch.engine.evaluate import load_eval_cases
from vrsearch.engine.metrics import conventions, worst_distance_mm
from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.study import load_study


def fit(study_path, ckpt, **kw):
    return run_trial(load_study(study_path), "t", ckpt, **kw)


def test_same_seed_same_numbers(tiny_study, tmp_path):
    path = tiny_study()
    a, b = fit(path, tmp_path / "a"), fit(path, tmp_path / "b")
    assert a.trial["status"] == "completed"
    assert pd.DataFrame(a.history).drop(columns="time_s").equals(pd.DataFrame(b.history).drop(columns="time_s"))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(b.cases))


def test_different_seed_differs(tiny_study, tmp_path):
    a = fit(tiny_study(), tmp_path / "a")
    b = fit(tiny_study(train={"seed": 1}), tmp_path / "b")
    assert [r.get("loss") for r in a.history] != [r.get("loss") for r in b.history]


def test_resume_from_checkpoint_is_bit_identical(tiny_study, tmp_path):
    path = tiny_study(train={"checkpoint_every": 2})
    whole = fit(path, tmp_path / "whole")
    study = load_study(path)
    first = Trainer(study, tmp_path / "split").fit(stop_at=4)
    assert first.status == "paused" and first.iterations == 4
    assert (tmp_path / "split" / "last.pt").exists()
    resumed = run_trial(study, "t", tmp_path / "split")  # a fresh process state would do the same
    cols = lambda out: pd.DataFrame(out.history).drop(columns="time_s")  # noqa: E731
    assert cols(whole).equals(cols(resumed))
    assert pd.DataFrame(whole.cases).equals(pd.DataFrame(resumed.cases))
    assert whole.trial["best_val_dice"] == resumed.trial["best_val_dice"]
    assert whole.trial["test_dice"] == resumed.trial["test_dice"]


def test_history_and_selection(tiny_study, tmp_path):
    out = fit(tiny_study(), tmp_path / "c")
    hist = pd.DataFrame(out.history)
    assert list(hist["iteration"]) == [0, 1, 2, 3, 4, 5, 6]
    evals = hist.dropna(subset=["val_dice"])
    assert list(evals["iteration"]) == [0, 3, 6]
    assert {"loss", "term_sup", "lr"} <= set(hist.columns)
    best = evals[evals.iteration > 0].val_dice.max()
    assert out.trial["best_val_dice"] == pytest.approx(best)
    cases = pd.DataFrame(out.cases)
    assert set(cases.split) == {"val", "test"}
    # test rows are computed once, for the checkpoint selected on validation
    assert set(cases.iteration) == {out.trial["best_iteration"]}
    assert cases.groupby(["split", "case_id"]).size().eq(13).all()  # 13 foreground classes per case
    # the lr follows poly decay
    lrs = hist.dropna(subset=["lr"]).lr.tolist()
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == pytest.approx(0.01)


@pytest.mark.parametrize("both_empty", ["nan", "one"])
def test_means_selection_and_recorded_metric_conventions(tiny_study, tmp_path, both_empty):
    study = load_study(tiny_study(), [f"train.eval.both_empty={both_empty}"])
    trainer = Trainer(study, tmp_path / "c")
    out = run_trial(study, "t", tmp_path / "c", trainer=trainer)
    cases = pd.DataFrame(out.cases)
    missed = cases.label_empty ^ cases.pred_empty
    assert missed.any()  # 6 iterations: some organs are not found yet
    grids = {
        c.case_id: (c.label.shape, c.spacing)
        for c in trainer.val_cases + load_eval_cases(trainer.data.split.test, study.dataset)
    }
    diagonal = cases.case_id.map(lambda c: worst_distance_mm(*grids[c]))
    assert (cases.loc[missed, "dice"] == 0).all()
    for m in ("hd95_mm", "assd_mm"):
        np.testing.assert_allclose(cases.loc[missed, m], diagonal[missed])
        assert (cases.loc[~missed, m] < diagonal[~missed]).all()
    # selection and the trial's means are the plain means of these rows
    val, test = cases[cases.split == "val"], cases[cases.split == "test"]
    assert out.trial["best_val_dice"] == pytest.approx(val.dice.mean())
    assert out.trial["test_dice"] == pytest.approx(test.dice.mean())
    assert out.trial["test_assd_mm"] == pytest.approx(test.assd_mm.mean())
    assert json.loads(out.trial["metric_conventions"]) == conventions(both_empty)


def test_nan_loss_fails_the_trial_with_its_reason(tiny_study, tmp_path, monkeypatch):
    from vrsearch.methods.supervised import Supervised

    real = Supervised.forward

    def explode(self, batch, it):
        out = real(self, batch, it)
        if it >= 2:
            out.loss = out.loss * torch.tensor(math.nan)
        return out

    monkeypatch.setattr(Supervised, "forward", explode)
    out = fit(tiny_study(), tmp_path / "n")
    assert out.trial["status"] == "failed"
    assert "loss became nan at iteration 3" in out.trial["error"]
    assert out.trial["iterations"] == 2
