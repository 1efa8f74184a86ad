"""Whole-study rules that a single section cannot check: what a trial reports, and
when a scheduler can stop a trial.

They apply to a study run on Ray Tune (``vrsearch train`` runs one trial and
ignores the ``search`` section): ``vrsearch validate`` checks them with
everything else ``vrsearch run`` checks before Ray starts
(:func:`vrsearch.orchestrate.checks.check_study`), so a study that validates
never meets a scheduler that Tune rejects (``grace_period must be <= max_t``)
or a search metric that no trial reports.

The time axis of ASHA and the median rule is the training iteration; a trial
reports to Tune only when it evaluates — at iteration 0 (``train.eval.at_start``),
every ``train.eval.every`` iterations and at its last iteration.
"""

from __future__ import annotations

from typing import Any

from vrsearch.errors import VrsearchError
from vrsearch.study.schema import Study

#: what every Tune report of a trial may carry (validation metrics at every report)
REPORTED = ("val_dice", "val_jaccard", "val_hd95_mm", "val_assd_mm", "loss", "lr")
#: metrics a search or scheduler may use: present in every report (``loss`` is missing
#: from the report at iteration 0 and ``lr`` is not a result)
SEARCH_METRICS = tuple(m for m in REPORTED if m.startswith("val_"))


class RuleError(VrsearchError):
    """A study breaks a whole-study rule (one line naming the field)."""


def values_of(study: Study, key: str) -> list[Any]:
    """Every value ``key`` (a dotted study path) can take in the study's trials: its own,
    and what the search space, the arms and the dataset axes set."""
    node: Any = study.model_dump(mode="json")
    for part in key.split("."):
        node = node[part]
    out = [node]
    s = study.search
    if key in s.space:
        out += s.space[key].named_values()
    out += [a.set[key] for a in s.arms if key in a.set]
    out += list(s.axes.get(key, []))
    return out


def check_metric(study: Study) -> None:
    if study.search.metric not in SEARCH_METRICS:
        raise RuleError(
            f"search.metric: {study.search.metric!r} is not a metric every trial reports; "
            f"use one of {', '.join(SEARCH_METRICS)}"
        )


def scheduler_plan(study: Study) -> tuple[int, int] | None:
    """(grace period, max_t) of the study's ASHA / median scheduler, None without one.
    max_t is one past the last iteration, so a trial that reaches it finishes by itself."""
    s, t = study.search, study.train
    if s.scheduler == "none":
        return None
    return s.grace_period or t.eval.every, t.iterations + 1


def check_schedule(study: Study) -> None:
    """A scheduler must be able to stop a trial before its last iteration."""
    s, t = study.search, study.train
    plan = scheduler_plan(study)
    if plan is None:
        return
    fix = "or set search.scheduler: none"
    if len({repr(v) for v in values_of(study, "train.iterations")}) > 1:
        raise RuleError(
            f"search.scheduler: {s.scheduler!r} stops trials on the training iteration, so every "
            f"trial needs the same train.iterations; this design varies it — {fix}"
        )
    every = max(values_of(study, "train.eval.every"))
    if every >= t.iterations:
        raise RuleError(
            f"train.eval.every: {every} is not below train.iterations ({t.iterations}): trials report "
            f"only at their last iteration, so scheduler {s.scheduler!r} can stop none; lower "
            f"train.eval.every {fix}"
        )
    grace, _ = plan
    if grace >= t.iterations:
        what = "search.grace_period" if s.grace_period else "search.grace_period (default: train.eval.every)"
        raise RuleError(
            f"{what}: the first rung at iteration {grace} is not before the last iteration "
            f"(train.iterations {t.iterations}), so scheduler {s.scheduler!r} can stop no trial; "
            f"lower it {fix}"
        )


def check_distinct_cells(study: Study) -> None:
    """Every cell of a fixed design trains its own configuration: two that resolve to the
    same one (an arm setting a knob to the value the baseline already has, say) would
    share an identity, results and checkpoints."""
    from vrsearch.study.design import GROUP_KEY, apply_cell, config_hash, design_cells

    if study.search.design == "search":
        return
    base = study.model_dump(mode="json")
    seen: dict[str, Any] = {}
    for cell in design_cells(study):
        key = config_hash(apply_cell(base, cell), with_seed=False)
        if key in seen:
            raise RuleError(
                f"search: {cell[GROUP_KEY]!r} trains the same configuration as {seen[key]!r}; "
                "give it a setting that differs or remove it"
            )
        seen[key] = cell[GROUP_KEY]


def check_rules(study: Study) -> None:
    check_metric(study)
    check_schedule(study)
    check_distinct_cells(study)
