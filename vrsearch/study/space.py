"""The search space of a study: which dimensions apply to a cell (conditional
``when``), the order in which to draw them, and the study's own point in it.
Used by validation (:mod:`vrsearch.study.load`) and by the designs
(:mod:`vrsearch.study.design`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vrsearch.errors import StudyError
from vrsearch.study.schema import Dimension, Study

#: a trial's seed: set by ``search.seeds`` in every design, so no space, arm or axis may set it
SEED_KEY = "train.seed"


def active(dim: Dimension, cell: Mapping[str, Any]) -> bool:
    """Whether a conditional dimension applies given the parent values in ``cell``."""
    for parent, wanted in dim.when.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if parent not in cell or cell[parent] not in values:
            return False
    return True


def ordered_space(study: Study) -> list[tuple[str, Dimension]]:
    """Dimensions with parents before the dimensions conditional on them."""
    space = study.search.space
    done: list[tuple[str, Dimension]] = []
    pending = dict(space)
    while pending:
        ready = [k for k, d in pending.items() if all(p in dict(done) for p in d.when)]
        if not ready:
            raise StudyError(f"search.space: circular 'when' conditions among {sorted(pending)}")
        for k in ready:
            done.append((k, pending.pop(k)))
    return done


def _in_space(dim: Dimension, value: Any) -> bool:
    if dim.type == "categorical":
        return value in dim.options()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    low, high = dim.bounds()
    return low <= value <= high and (dim.type != "int" or float(value).is_integer())


def default_point(study: Study) -> dict[str, Any]:
    """The study's own value of every (active) searched key: the trial that
    ``start_from_defaults`` enqueues. A value outside its space is an error."""
    resolved = study.model_dump(mode="json")
    point: dict[str, Any] = {}
    for key, dim in ordered_space(study):
        if not active(dim, point):
            continue
        node: Any = resolved
        for part in key.split("."):
            node = node[part]
        if not _in_space(dim, node):
            raise StudyError(
                f"search.start_from_defaults: {key} is {node!r} in the study, outside its "
                f"search space ({dim.choices if dim.type == 'categorical' else [dim.low, dim.high]})"
            )
        point[key] = node
    return point
