"""Dataset indexes: find the image/label files of a dataset in a public layout.

Three layouts are understood (``LAYOUTS``):

``msd``
    Medical Segmentation Decathlon: a ``dataset.json`` at the root listing
    ``training`` (image/label pairs), ``test`` and, as our extension,
    ``unlabeled`` entries. Paths are relative to the root; when a listed
    ``x.nii.gz`` is missing but the nnU-Net channel file ``x_0000.nii.gz``
    exists, the latter is used.
``nnunet``
    nnU-Net v2 raw data: ``imagesTr/<case>_0000<ending>`` with
    ``labelsTr/<case><ending>``, ``imagesTs``/``labelsTs`` for test and, as
    our extension, ``imagesUnlabeled`` for unlabeled images.
``flare22``
    The FLARE22 challenge release: ``Training/FLARE22_LabeledCase50/{images,
    labels}``, ``Training/*Unlabeled*`` folders and ``Validation`` (test).
    A root holding an nnU-Net conversion (``dataset.json``) is read as
    ``nnunet``.

Only files are located here (existence is checked); their content is
checked by :mod:`vrsearch.data.validate`. Every problem raises
:class:`~vrsearch.errors.DataError` with a one-line message naming the file;
a missing root names its absolute path and what the layout must hold there
(:func:`missing_root_message`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.errors import DataError

LAYOUTS = ("msd", "nnunet", "flare22", "acdc")
CHANNEL_SUFFIX = "_0000"
NIFTI_ENDINGS = (".nii.gz", ".nii")

FLARE22_LABELS: dict[int, str] = dict(enumerate((
    "background", "liver", "right_kidney", "spleen", "pancreas", "aorta",
    "inferior_vena_cava", "right_adrenal_gland", "left_adrenal_gland",
    "gallbladder", "esophagus", "stomach", "duodenum", "left_kidney",
)))


def read_dataset(layout: str, root: Path | str) -> DatasetIndex:
    """Index the dataset at ``root`` stored in ``layout`` (one of ``LAYOUTS``)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(missing_root_message(layout, root))
    if layout == "acdc":
        from vrsearch.data.acdc import read_acdc as reader
    else:
        reader = {"msd": _read_msd, "nnunet": _read_nnunet, "flare22": _read_flare22}[layout]
    index = reader(root)
    _check_unique_ids((*index.labeled, *index.unlabeled, *index.test))
    return index


# (layout name in messages, what the root must hold) for a missing root
ROOT_HINTS: dict[str, tuple[str, str]] = {
    "msd": ("MSD", "put a Medical Segmentation Decathlon task there (dataset.json listing training/test, "
                   "imagesTr/, labelsTr/, optional imagesTs/)"),
    "nnunet": ("nnU-Net", "put an nnU-Net raw dataset there (dataset.json, imagesTr/<case>_0000.nii.gz, "
                          "labelsTr/<case>.nii.gz, optional imagesTs/, imagesUnlabeled/)"),
    "flare22": ("FLARE22", "put the FLARE22 release there (Training/FLARE22_LabeledCase50/{images,labels}/, "
                           "Training/FLARE22_UnlabeledCase*/, optional Validation/)"),
    "acdc": ("ACDC", "put the ACDC release there (training/patientXXX/{Info.cfg, patientXXX_frameYY[_gt].nii.gz}, "
                     "optional testing/)"),
}


def missing_root_message(layout: str, root: Path) -> str:
    """One line for a dataset root that is not a folder: where the data must be, in which layout."""
    name, hint = ROOT_HINTS[layout]
    where = Path(root).expanduser().absolute()
    what = "is not a folder" if where.exists() else "not found"
    return f"{name} dataset {what} at {where}: {hint} or set dataset.root"


# ----------------------------------------------------------------- helpers

def case_id(filename: str, ending: str | None = None) -> str:
    """Case id of an image file name: drop the file ending and ``_0000``."""
    endings = (ending,) if ending else NIFTI_ENDINGS
    for end in endings:
        if filename.endswith(end):
            filename = filename[: -len(end)]
            break
    if filename.endswith(CHANNEL_SUFFIX):
        filename = filename[: -len(CHANNEL_SUFFIX)]
    return filename


def _ending_of(name: str) -> str:
    return next((e for e in NIFTI_ENDINGS if name.endswith(e)), Path(name).suffix)


def _check_unique_ids(cases: Iterable[Case]) -> None:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.id in seen:
            raise DataError(f"duplicated case id {case.id!r}: {seen[case.id]} and {case.image}")
        seen[case.id] = case.image


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
                    "give each class a single integer")
            if isinstance(value, bool) or not (isinstance(value, int) or _is_int_text(value)):
                raise DataError(f"invalid {source}: label {name!r} must map to an integer, got {value!r}")
            if int(value) in labels:
                raise DataError(f"invalid {source}: labels {labels[int(value)]!r} and {name!r} share value {value}")
            labels[int(value)] = str(name)
    if sorted(labels) != list(range(len(labels))):
        raise DataError(
            f"labels in {source} must be contiguous 0..C-1 with 0 = background; got {sorted(labels)}")
    return dict(sorted(labels.items()))


# --------------------------------------------------------------------- MSD

def _resolve(root: Path, rel: Any, source: Path, what: str, *, channel_fallback: bool) -> Path:
    if not isinstance(rel, str) or not rel:
        raise DataError(f"invalid {source}: {what} path must be a non-empty string, got {rel!r}")
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    if path.is_file():
        return path
    if channel_fallback:
        end = _ending_of(path.name)
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
                raise DataError(f"duplicated case id {case.id!r} in {source}: {seen[case.id]} and {key}[{i}] "
                                f"({case.image})")
            seen[case.id] = f"{key}[{i}]"


def _modality(desc: dict[str, Any]) -> str:
    """The single channel's modality in ``dataset.json`` (MSD ``modality``, nnU-Net v2
    ``channel_names``), or "" when it says none."""
    channels = desc.get("channel_names", desc.get("modality"))
    if isinstance(channels, dict) and len(channels) == 1:
        return str(next(iter(channels.values())))
    return ""


def _read_msd(root: Path) -> DatasetIndex:
    source, desc, labels = _read_description(root)
    labeled = _msd_cases(root, desc.get("training"), source, "training", label="required")
    if not labeled:
        raise DataError(f"no training cases listed in {source}")
    unlabeled = _msd_cases(root, desc.get("unlabeled"), source, "unlabeled", label="none")
    test = _msd_cases(root, desc.get("test"), source, "test", label="optional")
    _check_unique_entries(source, (("training", labeled), ("unlabeled", unlabeled), ("test", test)))
    return DatasetIndex(root=root, name=str(desc.get("name") or root.name), labels=labels, labeled=labeled,
                        unlabeled=unlabeled, test=test, modality=_modality(desc))


# ------------------------------------------------------------------ nnU-Net

def _folder_cases(images: Path, ending: str, labels: Path | None, *, required: bool,
                  pattern: str | None = None, meta: Mapping[str, Any] | None = None) -> list[Case]:
    """Cases from the image files of one folder, labels looked up by id."""
    pattern = pattern or f"*{CHANNEL_SUFFIX}{ending}"
    cases = []
    for image in sorted(p for p in images.glob(pattern) if p.is_file() and not p.name.startswith(".")):
        cid = case_id(image.name, ending)
        label = labels / f"{cid}{ending}" if labels is not None else None
        if label is not None and not label.is_file():
            if required:
                raise DataError(f"label not found for image {image}: expected {label}")
            label = None
        cases.append(Case(cid, image, label, dict(meta or {})))
    return cases


def _read_nnunet(root: Path) -> DatasetIndex:
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
    labeled = _folder_cases(images_tr, ending, root / "labelsTr", required=True)
    if not labeled:
        raise DataError(f"no images named <case>_0000{ending} in {images_tr}")
    labels_ts = root / "labelsTs"
    test = _folder_cases(root / "imagesTs", ending, labels_ts if labels_ts.is_dir() else None, required=False)
    unlabeled = _folder_cases(root / "imagesUnlabeled", ending, None, required=False)
    return DatasetIndex(root=root, name=str(desc.get("name") or root.name), labels=labels,
                        labeled=tuple(labeled), unlabeled=tuple(unlabeled), test=tuple(test),
                        modality=_modality(desc))


# ------------------------------------------------------------------ FLARE22

def _subdirs(parent: Path, *words: str, exclude: str | None = None) -> list[Path]:
    """Sub-folders of ``parent`` whose lower-cased name contains any of ``words``."""
    if not parent.is_dir():
        return []
    return sorted(
        d for d in parent.iterdir()
        if d.is_dir() and any(w in d.name.lower() for w in words)
        and not (exclude and exclude in d.name.lower()))


def _flare_test(root: Path) -> list[Case]:
    val = root / "Validation"
    if not val.is_dir():
        return []
    images = val / "images" if (val / "images").is_dir() else val
    label_dirs = [d for d in (*_subdirs(val, "label", "gt"), *_subdirs(root, "validationgt", "validation_gt",
                                                                      "validationlabel", "validation_label"))
                  if d != images]
    return _folder_cases(images, ".nii.gz", label_dirs[0] if label_dirs else None, required=False,
                         pattern="*.nii.gz")


def _read_flare22(root: Path) -> DatasetIndex:
    training = root / "Training" if (root / "Training").is_dir() else root
    labeled_dirs = [d for d in _subdirs(training, "labeledcase", exclude="unlabeled")
                    if (d / "images").is_dir() and (d / "labels").is_dir()]
    if not labeled_dirs:
        if (root / "dataset.json").is_file():
            return _read_nnunet(root)
        raise DataError(
            f"FLARE22 data not found under {root}: expected "
            "Training/FLARE22_LabeledCase50/{images,labels}/FLARE22_Tr_XXXX[_0000].nii.gz "
            "(and optional Training/FLARE22_UnlabeledCase*/, Validation/), or an nnU-Net dataset.json")
    labeled = _folder_cases(labeled_dirs[0] / "images", ".nii.gz", labeled_dirs[0] / "labels",
                            required=True, pattern="*.nii.gz")
    if not labeled:
        raise DataError(f"no FLARE22 images (*.nii.gz) in {labeled_dirs[0] / 'images'}")
    unlabeled: list[Case] = []
    for folder in _subdirs(training, "unlabeled"):
        for image in sorted(p for p in folder.rglob("*.nii.gz")
                            if p.is_file() and not p.name.startswith(".") and "__MACOSX" not in p.parts):
            unlabeled.append(Case(case_id(image.name), image, None, {"folder": folder.name}))
    return DatasetIndex(root=root, name="FLARE22", labels=dict(FLARE22_LABELS), labeled=tuple(labeled),
                        unlabeled=tuple(unlabeled), test=tuple(_flare_test(root)), modality="CT")
