"""The layouts that describe themselves in a ``dataset.json`` (:mod:`vrsearch.data.layouts`):
the Medical Segmentation Decathlon (``msd``: the file lists the cases) and nnU-Net v2 raw
data (``nnunet``: the file names the labels, channel and file ending; the cases are the
files of ``imagesTr``/``labelsTr``, ``imagesTs``/``labelsTs`` and ``imagesUnlabeled``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vrsearch.data.cases import CHANNEL_SUFFIX, Case, DatasetIndex, case_id, ending_of, folder_cases
from vrsearch.errors import DataError


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"dataset description not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON in {path}: {err.msg} (line {err.lineno}, column {err.colno})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise DataError(f"invalid {path}: the top level must be a JSON object, got {type(data).__name__}")
    return data


def _is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def parse_labels(raw: Any, source: Path) -> dict[int, str]:
    """Class map from either ``{"0": "background"}`` (MSD) or ``{"background": 0}`` (nnU-Net)."""
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"invalid {source}: 'labels' must be a non-empty object")
    labels: dict[int, str] = {}
    if all(_is_int_text(k) for k in raw):
        for key, name in raw.items():
            labels[int(key)] = str(name)
    else:
        for name, value in raw.items():
            if isinstance(value, (list, tuple)):
                raise DataError(
                    f"region-based label {name!r}: {value} in {source} is not supported; "
                    "give each class a single integer"
                )
            if isinstance(value, bool) or not (isinstance(value, int) or _is_int_text(value)):
                raise DataError(f"invalid {source}: label {name!r} must map to an integer, got {value!r}")
            if int(value) in labels:
                raise DataError(f"invalid {source}: labels {labels[int(value)]!r} and {name!r} share value {value}")
            labels[int(value)] = str(name)
    if sorted(labels) != list(range(len(labels))):
        raise DataError(f"labels in {source} must be contiguous 0..C-1 with 0 = background; got {sorted(labels)}")
    return dict(sorted(labels.items()))


def _resolve(root: Path, rel: Any, source: Path, what: str, *, channel_fallback: bool) -> Path:
    if not isinstance(rel, str) or not rel:
        raise DataError(f"invalid {source}: {what} path must be a non-empty string, got {rel!r}")
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if path.is_file():
        return path
    if channel_fallback:
        end = ending_of(path.name)
        alt = path.with_name(path.name[: len(path.name) - len(end)] + CHANNEL_SUFFIX + end)
        if alt.is_file():
            return alt
    raise DataError(f"{what} listed in {source} not found: {path}")


def _msd_cases(root: Path, entries: Any, source: Path, key: str, *, label: str) -> tuple[Case, ...]:
    """Cases of one list of ``dataset.json``; ``label`` is required|optional|none."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise DataError(f"invalid {source}: {key!r} must be a list")
    cases = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataError(f"invalid {source}: {key}[{i}] must be a path or an object with 'image'")
        image = _resolve(root, entry["image"], source, "image", channel_fallback=True)
        lab = None
        if entry.get("label") is not None and label != "none":
            lab = _resolve(root, entry["label"], source, "label", channel_fallback=False)
        elif label == "required":
            raise DataError(f"invalid {source}: {key}[{i}] ({entry['image']}) has no 'label'")
        meta = {k: v for k, v in entry.items() if k not in ("image", "label")}
        cases.append(Case(case_id(image.name), image, lab, meta))
    return tuple(cases)


def _read_description(root: Path) -> tuple[Path, dict[str, Any], dict[int, str]]:
    """``dataset.json`` of an MSD / nnU-Net dataset: its path, content and labels."""
    source = root / "dataset.json"
    desc = _load_json(source)
    if "labels" not in desc:
        raise DataError(f"invalid {source}: no 'labels'")
    return source, desc, parse_labels(desc["labels"], source)


def _check_unique_entries(source: Path, lists: Iterable[tuple[str, tuple[Case, ...]]]) -> None:
    """Case ids are unique across the lists of ``dataset.json``; a duplicate names both entries."""
    seen: dict[str, str] = {}
    for key, cases in lists:
        for i, case in enumerate(cases):  # one case per entry, in order
            if case.id in seen:
                raise DataError(
                    f"duplicated case id {case.id!r} in {source}: {seen[case.id]} and {key}[{i}] ({case.image})"
                )
            seen[case.id] = f"{key}[{i}]"


def _modality(desc: dict[str, Any]) -> str:
    """The single channel's modality in ``dataset.json`` (MSD ``modality``, nnU-Net v2
    ``channel_names``), or "" when it says none."""
    channels = desc.get("channel_names", desc.get("modality"))
    if isinstance(channels, dict) and len(channels) == 1:
        return str(next(iter(channels.values())))
    return ""


def read_msd(root: Path) -> DatasetIndex:
    source, desc, labels = _read_description(root)
    labeled = _msd_cases(root, desc.get("training"), source, "training", label="required")
    if not labeled:
        raise DataError(f"no training cases listed in {source}")
    unlabeled = _msd_cases(root, desc.get("unlabeled"), source, "unlabeled", label="none")
    test = _msd_cases(root, desc.get("test"), source, "test", label="optional")
    _check_unique_entries(source, (("training", labeled), ("unlabeled", unlabeled), ("test", test)))
    return DatasetIndex(
        root=root,
        name=str(desc.get("name") or root.name),
        labels=labels,
        labeled=labeled,
        unlabeled=unlabeled,
        test=test,
        modality=_modality(desc),
    )


def read_nnunet(root: Path) -> DatasetIndex:
    source, desc, labels = _read_description(root)
    channels = desc.get("channel_names", desc.get("modality", {"0": "image"}))
    if not isinstance(channels, dict) or len(channels) != 1:
        raise DataError(f"only single-channel datasets are supported; {source} names channels {channels}")
    ending = desc.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DataError(f"invalid {source}: 'file_ending' must be like '.nii.gz', got {ending!r}")
    images_tr = root / "imagesTr"
    if not images_tr.is_dir():
        raise DataError(f"nnU-Net images folder not found: {images_tr} (expected imagesTr/<case>_0000{ending})")
    labeled = folder_cases(images_tr, ending, root / "labelsTr", required=True)
    if not labeled:
        raise DataError(f"no images named <case>_0000{ending} in {images_tr}")
    labels_ts = root / "labelsTs"
    test = folder_cases(root / "imagesTs", ending, labels_ts if labels_ts.is_dir() else None, required=False)
    unlabeled = folder_cases(root / "imagesUnlabeled", ending, None, required=False)
    return DatasetIndex(
        root=root,
        name=str(desc.get("name") or root.name),
        labels=labels,
        labeled=tuple(labeled),
        unlabeled=tuple(unlabeled),
        test=tuple(test),
        modality=_modality(desc),
    )
