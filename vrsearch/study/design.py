"""From a study's ``search`` section to trial configurations.

A trial configuration is a *cell* — ``{dotted.path: value}`` overrides of
the resolved study — crossed with a seed. Designs:

* ``none``: the study itself, once per seed;
* ``grid``: the full factorial of categorical dimensions (a conditional
  dimension only multiplies the cells where its parents match);
* ``random``: ``num_samples`` cells drawn from the space with a seeded
  generator (no Optuna);
* ``ablation``: a ``baseline`` cell plus one cell per arm;
* ``search``: Optuna proposes cells through :func:`optuna_space`
  (define-by-run, so conditional dimensions are honoured).

Fixed designs are crossed with ``search.axes`` (dataset settings such as the
labeled ratio) and then with the seeds. Every cell carries a ``group`` label
(the arm, or the knob values, plus the axis values): the configuration whose
seeds the statistics pool. A trial's identity is :func:`config_hash` of its
resolved method/dataset/model/train sections, so a grown study can tell which
cells it already ran.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vrsearch.errors import StudyError
from vrsearch.study.load import build_study, set_path
from vrsearch.study.schema import Dimension, Study
from vrsearch.study.space import SEED_KEY, active, default_point, ordered_space  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    import optuna

ARM_KEY, GROUP_KEY = "arm", "group"
#: the Optuna trial a search's trial evaluates (its number in the Optuna study)
OPTUNA_KEY = "optuna_trial"
#: keys of a cell that label it rather than set a field of the study
LABEL_KEYS = (ARM_KEY, GROUP_KEY, OPTUNA_KEY)
#: the sections that determine a trial's results (resources and output do not)
IDENTITY_SECTIONS = ("method", "dataset", "model", "train")


def _short(key: str) -> str:
    for prefix in ("method.params.", "dataset."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def group_label(cell: Mapping[str, Any], axes: Iterable[str] = ()) -> str:
    """``arm`` (or ``knob=value, ...``) then ``axis=value, ...``; ``study`` if empty."""
    axes = [k for k in axes if k in cell]
    if cell.get(ARM_KEY):
        parts = [str(cell[ARM_KEY])]
    else:
        parts = [
            f"{_short(k)}={_fmt(cell[k])}"
            for k in sorted(cell)
            if k not in LABEL_KEYS and k != SEED_KEY and k not in axes
        ]
    parts += [f"{_short(k)}={_fmt(cell[k])}" for k in axes]
    return ", ".join(parts) or "study"


def config_hash(study: Study, *, with_seed: bool = True) -> str:
    """Stable identity of a resolved trial study (its method/dataset/model/train
    sections); ``with_seed=False`` identifies the configuration across seeds.

    Only values that differ from their defaults (the schema's, and the method's for
    its params) enter the hash, so a release that adds a knob with a default does not
    make every finished trial of a grown study look new; changing a default does.
    Of the resources only ``workers_per_trial`` counts: DDP workers each train on their
    own batch, so their number changes what is trained (CPUs and GPUs do not)."""
    from vrsearch.methods import get_method

    lean = study.model_dump(mode="json", exclude_defaults=True)
    identity = {k: lean.get(k, {}) for k in IDENTITY_SECTIONS}
    defaults = get_method(study.method.name).params().model_dump(mode="json")
    identity["method"] = {
        "name": study.method.name,
        "params": {k: v for k, v in study.method.params.items() if defaults.get(k, ...) != v},
    }
    if not with_seed:
        identity["train"] = {k: v for k, v in identity["train"].items() if k != "seed"}
    if study.resources.workers_per_trial != 1:
        identity["workers_per_trial"] = study.resources.workers_per_trial
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def grid_cells(study: Study) -> list[dict[str, Any]]:
    cells: list[dict[str, Any]] = [{}]
    for key, dim in ordered_space(study):
        nxt: list[dict[str, Any]] = []
        for cell in cells:
            if active(dim, cell):
                nxt.extend({**cell, key: choice} for choice in dim.options())
            else:
                nxt.append(cell)
        cells = nxt
    return cells


def _draw(dim: Dimension, rng: np.random.Generator) -> Any:
    if dim.type == "categorical":
        choices = dim.options()
        return choices[int(rng.integers(len(choices)))]
    lo, hi = dim.bounds()
    x = math.exp(rng.uniform(math.log(lo), math.log(hi))) if dim.log else rng.uniform(lo, hi)
    if dim.step:
        x = lo + round((x - lo) / dim.step) * dim.step
    return int(round(x)) if dim.type == "int" else float(x)


def random_cells(study: Study, seed: int = 0) -> list[dict[str, Any]]:
    """``num_samples`` distinct cells drawn with a seeded generator (a draw that repeats an
    earlier cell is drawn again: two equal cells would be one configuration)."""
    rng = np.random.default_rng([seed, 7919])
    cells: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(100 * study.search.num_samples):
        if len(cells) == study.search.num_samples:
            break
        cell: dict[str, Any] = {}
        for key, dim in ordered_space(study):
            if active(dim, cell):
                cell[key] = _draw(dim, rng)
        key = json.dumps(cell, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            cells.append(cell)
    if len(cells) < study.search.num_samples:
        raise StudyError(
            f"search.num_samples: {study.search.num_samples} random cells asked, but the space gave "
            f"only {len(cells)} distinct ones; lower num_samples or use design 'grid'"
        )
    return cells


def _base_cells(study: Study) -> list[dict[str, Any]]:
    s = study.search
    if s.design == "grid":
        return grid_cells(study)
    if s.design == "random":
        return random_cells(study, s.seeds[0])
    if s.design == "ablation":
        return [{ARM_KEY: "baseline"}] + [{ARM_KEY: a.name, **a.set} for a in s.arms]
    if s.design == "none":
        return [{}]
    raise ValueError(f"design {s.design!r} has no fixed cells (Optuna proposes them)")


def design_cells(study: Study) -> list[dict[str, Any]]:
    """Cells of a non-Optuna design crossed with the dataset axes: dicts of
    overrides plus their ``arm`` (ablation) and ``group`` labels."""
    cells = _base_cells(study)
    for key, values in study.search.axes.items():
        cells = [{**cell, key: value} for cell in cells for value in values]
    return [{**cell, GROUP_KEY: group_label(cell, study.search.axes)} for cell in cells]


class OptunaSpace:
    """A picklable define-by-run space for Optuna (``OptunaSearch(space=...)``);
    conditional dimensions are suggested only when their parents match."""

    def __init__(self, study: Study):
        self.dims = ordered_space(study)

    def __call__(self, trial: optuna.Trial) -> None:
        cell: dict[str, Any] = {}
        for key, dim in self.dims:
            if not active(dim, cell):
                continue
            if dim.type == "categorical":
                cell[key] = trial.suggest_categorical(key, dim.options())
                continue
            low, high = dim.bounds()
            if dim.type == "int":
                cell[key] = trial.suggest_int(key, int(low), int(high), step=int(dim.step or 1), log=dim.log)
            else:
                cell[key] = trial.suggest_float(key, low, high, step=dim.step, log=dim.log)
        return None


def optuna_space(study: Study) -> OptunaSpace:
    return OptunaSpace(study)


def apply_cell(base: Mapping[str, Any], cell: Mapping[str, Any], seed: int | None = None) -> Study:
    """The resolved study of one trial: ``base`` (a resolved study dict) + overrides."""
    raw = copy.deepcopy(dict(base))
    for key, value in cell.items():
        if key in LABEL_KEYS:
            continue
        set_path(raw, key, value)
    if seed is not None:
        set_path(raw, SEED_KEY, seed)
    raw["search"] = {"design": "none"}
    return build_study(raw, check_design=False)


def n_trials(study: Study) -> int:
    s = study.search
    if s.design == "search":
        return s.num_samples * len(s.seeds)
    return len(design_cells(study)) * len(s.seeds)


def cells_with_seeds(study: Study) -> list[dict[str, Any]]:
    """Every (cell, seed) of a fixed design, in a stable order."""
    return [{**cell, SEED_KEY: seed} for cell, seed in itertools.product(design_cells(study), study.search.seeds)]
