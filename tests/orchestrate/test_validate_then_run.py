"""Whatever ``vrsearch validate`` accepts, ``vrsearch run`` must not refuse on a schema or
scheduler check: generated studies with tiny budgets go through the checks ``validate``
runs, and every accepted one is set up exactly as ``run`` sets it up — Tune's scheduler
and search algorithm built and given their metric (where Tune asserts, e.g. ASHA's
``grace_period <= max_t``), Optuna asked for configurations (where it rejects spaces,
e.g. an integer range with both ``log`` and ``step``), and every trial's study resolved
from its cell. No training and no Ray cluster: this is the part of ``run`` before the
first trial starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_study_dict
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.checks import check_study
from vrsearch.orchestrate.experiment import plan, tune_setup
from vrsearch.orchestrate.trainable import trial_resources, trial_study
from vrsearch.results.rundir import RunDir
from vrsearch.study.load import build_study

DIMS = {
    "train.optimizer.lr": st.sampled_from(
        [
            {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            {"type": "float", "low": 0.0, "high": 0.1, "step": 0.01},
            {"type": "categorical", "choices": [0.01, 0.02]},
        ]
    ),
    "train.batch.labeled": st.sampled_from(
        [
            {"type": "int", "low": 1, "high": 2},
            {"type": "int", "low": 1, "high": 4, "log": True, "step": 1},
            {"type": "categorical", "choices": [1, 2]},
            {"type": "int", "low": 1, "high": 2},
            {"type": "int", "low": 1, "high": 4, "log": True, "step": 2},  # refused: Optuna has no log step
        ]
    ),
    "method.params.loss": st.just({"type": "categorical", "choices": ["ce", "dice_ce"]}),
    "train.iterations": st.just({"type": "categorical", "choices": [4, 6]}),
    "dataset.patch_size": st.just({"type": "categorical", "choices": [[16, 16, 16], [32, 16, 16]]}),
    "train.eval.every": st.just({"type": "categorical", "choices": [2, 3]}),
}


RARELY = st.sampled_from([False] * 9 + [True])


@st.composite
def studies(draw) -> dict:
    """A raw study: tiny budget, any design, scheduler and knob a design may read (or not)."""
    design = draw(st.sampled_from(["search", "none", "grid", "random", "ablation", "search"]))
    search: dict = {
        "design": design,
        "scheduler": draw(st.sampled_from(["asha", "median", "none"])),
        "seeds": draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)),
    }
    optional = {  # value, and whether the design / scheduler reads the key
        "grace_period": (st.integers(1, 14), search["scheduler"] != "none"),
        "reduction_factor": (st.integers(2, 4), search["scheduler"] == "asha"),
        "num_samples": (st.integers(1, 3), design in ("search", "random")),
        "searcher": (st.sampled_from(["tpe", "random", "cmaes"]), design == "search"),
        "aggregate": (st.sampled_from(["mean", "lcb"]), design == "search"),
        "start_from_defaults": (st.booleans(), design == "search"),
    }
    for key, (values, read) in optional.items():
        if draw(st.booleans() if read else RARELY):  # now and then where it is ignored
            search[key] = draw(values)
    if design in ("grid", "random", "search") or draw(RARELY):
        usual = [k for k in sorted(DIMS) if k != "dataset.patch_size" or design != "search" or draw(RARELY)]
        keys = draw(st.lists(st.sampled_from(usual), min_size=1, max_size=2, unique=True))
        search["space"] = {k: draw(DIMS[k]) for k in keys}
    if design == "ablation" or draw(RARELY):
        search["arms"] = [{"name": "ce", "set": {"method.params.loss": "ce"}}]
        if draw(st.booleans()):
            search["arms"].append({"name": "slow", "set": {"train.eval.every": draw(st.integers(1, 14))}})
    every = draw(st.integers(1, 10))
    iterations = every + draw(st.integers(-3, 8))  # mostly evaluated before the end
    train = {
        "iterations": max(1, iterations),
        "log_every": 1,
        "threads": 1,
        "eval": {"every": every, "at_start": draw(st.booleans())},
    }
    return {"train": train, "search": search}


def _accepted(raw: dict):
    try:
        study = build_study(raw)
        check_study(study)
    except VrsearchError as exc:
        assert "\n" not in str(exc) and ": " in str(exc)  # one line naming a field
        return None
    return study


def _set_up_as_run(study, run_dir: Path) -> int:
    """What ``vrsearch run`` does with the study before the first trial trains;
    returns how many trial configurations were resolved."""
    s = study.search
    base = study.model_dump(mode="json")
    if s.design == "search":
        base["train"]["seed"] = s.seeds[0]
    run = RunDir(run_dir)
    work = plan(study, run)
    _, cfg = tune_setup(study, run, work)
    assert cfg.scheduler.set_search_properties(s.metric, s.mode)
    if work.cells is not None:
        configs = [{"cell": cell} for cell in work.cells]
    else:
        configs = [cfg.search_alg.suggest(f"t{i}") for i in range(min(3, work.trials))]
        configs = [c for c in configs if c is not None]  # a limiter may hold back proposals
        assert configs
    for config in configs:
        trial_study(base, config)
        trial_resources(base, config)
    return len(configs)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(raw=studies())
@example(
    raw={
        "train": {},
        "search": {
            "design": "search",
            "space": {"train.batch.labeled": {"type": "int", "low": 1, "high": 4, "log": True, "step": 2}},
        },
    }
)  # Optuna: no step on a log range
@example(
    raw={
        "train": {},
        "search": {
            "design": "search",
            "space": {"dataset.patch_size": {"type": "categorical", "choices": [[16, 16, 16], [32, 16, 16]]}},
        },
    }
)  # Optuna: scalar choices only
@example(raw={"train": {"iterations": 100, "eval": {"every": 250}}, "search": {"design": "none"}})  # issue 16
def test_a_study_that_validates_is_set_up_by_run_without_error(raw, tiny_phantom):
    with tempfile.TemporaryDirectory() as tmp:
        full = tiny_study_dict(tiny_phantom, Path(tmp) / "out")
        full["train"] = {
            **full["train"],
            **raw["train"],
            "eval": {**full["train"]["eval"], **raw["train"].get("eval", {})},
        }
        full["search"] = raw["search"]
        study = _accepted(full)
        if study is not None:
            assert _set_up_as_run(study, Path(tmp)) >= 1


def test_the_generator_makes_both_accepted_and_refused_studies(tiny_phantom):
    """The property above means something only if both kinds are generated."""
    accepted = []

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(raw=studies())
    def collect(raw):
        full = tiny_study_dict(tiny_phantom, Path("/nonexistent/out"))
        full["train"] = {**full["train"], **raw["train"], "eval": {**full["train"]["eval"], **raw["train"]["eval"]}}
        full["search"] = raw["search"]
        accepted.append(_accepted(full) is not None)

    collect()
    assert 20 <= sum(accepted) <= len(accepted) - 10, f"{sum(accepted)} of {len(accepted)} accepted"
