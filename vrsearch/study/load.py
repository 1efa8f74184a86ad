"""Loading a study file: safe YAML, ``--set`` overrides, validation, and
one-line errors that name the YAML path (``train.batch.labeled: ...``)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vrsearch.core.names import did_you_mean
from vrsearch.errors import StudyError, VrsearchError
from vrsearch.methods import get_method
from vrsearch.registry import MethodParams
from vrsearch.study.schema import Study
from vrsearch.study.search import DESIGNS
from vrsearch.study.space import SEED_KEY, default_point


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated mapping keys instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise StudyError(f"line {mark.line + 1}: duplicated key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a study file safely; errors name the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"{path}: cannot read study file ({exc.__class__.__name__}: {exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except StudyError as exc:
        raise StudyError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StudyError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        raise StudyError(f"{path}: the study file is empty (expected a YAML mapping with at least 'name')")
    if not isinstance(data, dict):
        raise StudyError(f"{path}: a study file must be a YAML mapping (got {type(data).__name__})")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.optimizer.lr=3e-4"`` → ``("train.optimizer.lr", 0.0003)`` (value parsed as YAML)."""
    if "=" not in text:
        raise StudyError(f"--set {text!r}: expected key=value, e.g. train.iterations=100")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise StudyError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, creating dicts."""
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise StudyError(f"{'.'.join(parts[: i + 1])}: is not a section, cannot set {dotted}")
        node = child
    node[parts[-1]] = value


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """The first error as ``path.to.field: message`` (plus a count of others)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    if loc[:1] == ["search"] and len(loc) > 1 and loc[1] in DESIGNS:  # the union's tag: not a key
        del loc[1]
    ctx = first.get("ctx") or {}
    if first["type"] == "unknown_key":
        loc.append(ctx["key"])
        msg = "unknown key" + ctx.get("hint", "")
    elif first["type"] == "ignored_key":
        loc.append(ctx["key"])
        msg = first["msg"].removeprefix(f"{ctx['key']} ")
    elif first["type"] == "cross":
        loc, msg = [], first["msg"]
    else:
        msg = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if first["type"] in ("missing",):
            msg = "required field is missing"
    path = ".".join(p for p in [prefix, *loc] if p)
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{path}: {msg}{more}" if path else f"{msg}{more}"


def _validate_params(study: Study) -> MethodParams:
    try:
        spec = get_method(study.method.name)
    except VrsearchError as exc:
        raise StudyError(f"method.name: {exc}") from None
    try:
        params = spec.validate(study.method.params)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "extra_forbidden":
            key = str(first["loc"][0])
            raise StudyError(
                f"method.params.{key}: unknown parameter of method {spec.name!r}"
                f"{did_you_mean(key, spec.params.model_fields)}"
            ) from None
        knob = str(first["loc"][0]) if first["loc"] else ""
        about = f" — {spec.description(knob)}" if spec.description(knob) else ""
        raise StudyError(format_validation_error(exc, "method.params") + about) from None
    if spec.data_needs(params).unlabeled and study.train.batch.unlabeled == 0:
        raise StudyError(
            f"train.batch.unlabeled: method {spec.name!r} trains on unlabeled images, "
            "so the batch needs at least 1 (got 0)"
        )
    return params


def _lookup(data: Mapping[str, Any], dotted: str) -> str | None:
    """None if ``dotted`` names an existing field of the resolved study, else an error."""
    node: Any = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            options = list(node) if isinstance(node, Mapping) else []
            where = ".".join(parts[:i]) or "the study"
            return f"{part!r} is not a field of {where}{did_you_mean(part, options)}"
        node = node[part]
    return None


def _check_overrides(raw: dict[str, Any], resolved: dict[str, Any], keys: Iterable[tuple[str, str, list]]) -> None:
    """Each ``(where, dotted, values)`` must name a field and every value must validate."""
    for where, dotted, values in keys:
        if dotted == SEED_KEY:  # every cell runs once per seed of search.seeds, which would overwrite it
            raise StudyError(f"{where}: the seed is not a knob; list the seeds in search.seeds")
        problem = _lookup(resolved, dotted)
        if problem:
            raise StudyError(f"{where}: {problem}")
        for value in values:
            trial = copy.deepcopy(raw)
            set_path(trial, dotted, value)
            try:
                build_study(trial, check_design=False)
            except StudyError as exc:
                raise StudyError(f"{where}: value {value!r} is invalid ({exc})") from None


def build_study(raw: dict[str, Any], *, check_design: bool = True) -> Study:
    """Validate a raw mapping into a resolved :class:`Study` (method params filled)."""
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(format_validation_error(exc)) from None
    params = _validate_params(study)
    study.method.params = params.model_dump(mode="json")
    if check_design:
        resolved = study.model_dump(mode="json")
        space = [(f"search.space.{k}", k, d.named_values()) for k, d in study.search.space.items()]
        arms = [(f"search.arms.{a.name}.set.{k}", k, [v]) for a in study.search.arms for k, v in a.set.items()]
        axes = [(f"search.axes.{k}", k, list(v)) for k, v in study.search.axes.items()]
        _check_overrides(raw, resolved, space + arms + axes)
        if study.search.start_from_defaults:
            default_point(study)
    return study


def load_study(path: Path | str, overrides: Iterable[str] = ()) -> Study:
    """Read, override and validate a study file; relative paths become absolute."""
    raw = read_yaml(Path(path))
    for text in overrides:
        key, value = parse_override(text)
        set_path(raw, key, value)
    study = build_study(raw)
    study.dataset.root = study.dataset.root.expanduser().absolute()
    study.output.dir = study.run_dir.expanduser().absolute()
    if study.output.storage is not None:
        from vrsearch.results.storage import is_uri

        if not is_uri(study.output.storage):
            study.output.storage = str(Path(study.output.storage).expanduser().absolute())
    return study


def study_to_yaml(study: Study) -> str:
    return yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
