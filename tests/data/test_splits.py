"""Splits: determinism, disjointness, invariance of val/test, prefix property."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.data.splits import Split, make_split
from vrsearch.errors import DataError


def _case(cid: str, labeled: bool = True) -> Case:
    return Case(
        cid,
        Path(f"/d/imagesTr/{cid}_0000.nii.gz"),
        Path(f"/d/labelsTr/{cid}.nii.gz") if labeled else None,
        {"patient": cid},
    )


def _index(n: int = 20, n_unlabeled: int = 3, test=(), reverse: bool = False) -> DatasetIndex:
    labeled = [_case(f"c{i:03d}") for i in range(n)]
    if reverse:
        labeled.reverse()
    return DatasetIndex(
        Path("/d"),
        "toy",
        {0: "background", 1: "fg"},
        tuple(labeled),
        tuple(_case(f"u{i:03d}", False) for i in range(n_unlabeled)),
        tuple(test),
    )


KW = dict(split_seed=0, val_fraction=0.2, test_fraction=0.2)


def _ids(cases) -> list[str]:
    return [c.id for c in cases]


def test_counts_and_withheld_labels():
    split = make_split(_index(20), labeled_ratio=0.25, **KW)
    assert (len(split.test), len(split.val)) == (4, 4)
    assert len(split.labeled) == 3  # round(0.25 * 12)
    assert len(split.unlabeled) == 9 + 3
    assert all(c.label is not None for c in (*split.labeled, *split.val, *split.test))
    assert all(c.label is None for c in split.unlabeled)
    withheld = split.unlabeled[:9]
    assert all(c.id.startswith("c") and c.image.name == f"{c.id}_0000.nii.gz" for c in withheld)
    assert withheld[0].meta == {"patient": withheld[0].id}
    assert _ids(split.unlabeled[9:]) == ["u000", "u001", "u002"]


def test_disjoint_and_complete():
    index = _index(20)
    split = make_split(index, labeled_ratio=0.5, **KW)
    groups = [set(_ids(g)) for g in (split.labeled, split.unlabeled, split.val, split.test)]
    assert sum(map(len, groups)) == len(set().union(*groups)) == 23
    assert set().union(*groups) == set(_ids(index.labeled)) | set(_ids(index.unlabeled))


def test_deterministic_and_independent_of_file_order():
    a = make_split(_index(20), labeled_ratio=0.3, **KW)
    b = make_split(_index(20, reverse=True), labeled_ratio=0.3, **KW)
    assert a == b
    assert isinstance(a, Split)


def test_seed_changes_split():
    a = make_split(_index(20), labeled_ratio=0.3, **KW)
    b = make_split(_index(20), labeled_ratio=0.3, **{**KW, "split_seed": 1})
    assert (_ids(a.val), _ids(a.test)) != (_ids(b.val), _ids(b.test))


def test_val_test_invariant_under_labeled_ratio_and_prefix_property():
    index = _index(30)
    splits = [make_split(index, labeled_ratio=r, **KW) for r in (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)]
    for s in splits[1:]:
        assert s.val == splits[0].val and s.test == splits[0].test
    for small, large in zip(splits, splits[1:]):
        assert large.labeled[: len(small.labeled)] == small.labeled
        assert len(large.labeled) >= len(small.labeled)
    assert len(splits[0].labeled) == 1 and len(splits[-1].labeled) == 18


def test_all_labels_keeps_every_train_case():
    index = _index(20)
    full = make_split(index, labeled_ratio=0.1, all_labels=True, **KW)
    part = make_split(index, labeled_ratio=0.1, **KW)
    assert len(full.labeled) == 12 and _ids(full.unlabeled) == ["u000", "u001", "u002"]
    assert full.val == part.val and full.test == part.test
    assert set(_ids(full.labeled)) == set(_ids(part.labeled)) | {c.id for c in part.unlabeled[:-3]}


def test_small_fractions_take_at_least_one_case():
    split = make_split(_index(5), labeled_ratio=1.0, split_seed=3, val_fraction=0.01, test_fraction=0.01)
    assert (len(split.val), len(split.test), len(split.labeled)) == (1, 1, 3)
    none = make_split(_index(5), labeled_ratio=1.0, split_seed=3, val_fraction=0.0, test_fraction=0.0)
    assert (len(none.val), len(none.test), len(none.labeled)) == (0, 0, 5)


def test_too_few_cases_explains_counts():
    with pytest.raises(DataError, match=r"cannot split 2 (labeled cases|patients) in /d: test 1 \+ val 1 leave 0"):
        make_split(_index(2), labeled_ratio=0.5, **KW)


def test_use_dataset_test():
    test = (_case("t001"), _case("t000"))
    split = make_split(_index(10, test=test), labeled_ratio=1.0, use_dataset_test=True, **KW)
    assert _ids(split.test) == ["t000", "t001"]
    assert len(split.val) == 2 and len(split.labeled) == 8


def test_use_dataset_test_requires_labels():
    test = (_case("t000"), _case("t001", labeled=False))
    with pytest.raises(DataError, match=r"t001_0000\.nii\.gz has none"):
        make_split(_index(10, test=test), labeled_ratio=1.0, use_dataset_test=True, **KW)
    with pytest.raises(DataError, match="no test cases"):
        make_split(_index(10), labeled_ratio=1.0, use_dataset_test=True, **KW)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_labeled_ratio_range(ratio):
    with pytest.raises(ValueError, match="labeled_ratio"):
        make_split(_index(10), labeled_ratio=ratio, **KW)


@pytest.mark.parametrize("name", ["val_fraction", "test_fraction"])
def test_fraction_range(name):
    with pytest.raises(ValueError, match=name):
        make_split(_index(10), labeled_ratio=0.5, **{**KW, name: 1.0})


def test_phases_of_one_patient_never_straddle_splits():
    from pathlib import Path

    from vrsearch.data.cases import Case, DatasetIndex

    cases = tuple(
        Case(
            f"p{p:03d}_{ph}",
            Path(f"/d/p{p}_{ph}.nii.gz"),
            Path(f"/d/p{p}_{ph}_gt.nii.gz"),
            {"patient": f"p{p:03d}", "phase": ph},
        )
        for p in range(20)
        for ph in ("ED", "ES")
    )
    index = DatasetIndex(root=Path("/d"), name="x", labels={0: "bg", 1: "a"}, labeled=cases, unlabeled=(), test=())
    for seed in range(5):
        split = make_split(index, labeled_ratio=0.3, split_seed=seed, val_fraction=0.2, test_fraction=0.2)
        roles = {}
        for role in ("labeled", "unlabeled", "val", "test"):
            for c in getattr(split, role):
                roles.setdefault(c.meta["patient"], set()).add(role)
        assert all(len(r) == 1 for r in roles.values()), roles
        assert len(split.test) == 8 and len(split.val) == 8  # 4 patients × 2 phases each
