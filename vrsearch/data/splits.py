"""Train/val/test splits at a labeled ratio.

The labeled cases of a dataset are sorted by id and shuffled once with
``numpy.random.default_rng(split_seed)``; test and val are carved from the
front of that order, and the rest is training. Of the training cases the
first ``max(1, round(labeled_ratio * n_train))`` keep their labels and the
others become unlabeled (their labels withheld). Hence:

* the split depends only on (sorted ids, seed, fractions), never on file
  system order;
* val and test do not depend on ``labeled_ratio``, so methods at different
  ratios are compared on the same cases;
* the labeled set at a smaller ratio is a prefix of the one at a larger ratio.

The dataset's own unlabeled pool (``index.unlabeled``, e.g. FLARE22's
unlabeled folder) joins training whole and sorted by id by default. With
``unlabeled_pool=k`` the pool, sorted by id, is shuffled once with a second
stream of the seed (``default_rng([split_seed, 1])``, independent of the
labeled shuffle) and its first ``k`` images are kept in that order, so a
smaller pool is a prefix of a larger one (FLARE22 paper: 42 ⊂ 378) and the
choice never depends on file system order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.errors import DataError


@dataclass(frozen=True)
class Split:
    """Cases per role for one trial."""

    labeled: tuple[Case, ...]
    """Training cases used with their labels (shuffled order; see module doc)."""
    unlabeled: tuple[Case, ...]
    """Training cases without labels: withheld-label cases, then the dataset's unlabeled pool."""
    val: tuple[Case, ...]
    test: tuple[Case, ...]


def _count(fraction: float, n: int) -> int:
    """round(fraction * n), at least 1 when fraction > 0."""
    return 0 if fraction == 0 else max(1, round(fraction * n))


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def pool_cases(index: DatasetIndex, split_seed: int, size: int | None) -> tuple[Case, ...]:
    """The images of ``index.unlabeled`` that join training (see module doc).

    ``size`` None: all, sorted by id; else the first ``size`` of a seeded
    shuffle (nested in ``size``). Raises DataError when the pool is smaller.
    """
    pool = sorted(index.unlabeled, key=lambda c: c.id)
    if size is None:
        return tuple(pool)
    if size < 0:
        raise ValueError(f"unlabeled_pool must be >= 0, got {size}")
    if size > len(pool):
        raise DataError(f"dataset.unlabeled_pool is {size} but {index.root} has only {len(pool)} unlabeled images")
    order = np.random.default_rng([split_seed, 1]).permutation(len(pool))
    return tuple(pool[i] for i in order[:size])


def make_split(
    index: DatasetIndex,
    *,
    labeled_ratio: float,
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    use_dataset_test: bool = False,
    all_labels: bool = False,
    unlabeled_pool: int | None = None,
) -> Split:
    """Split ``index.labeled`` into labeled/unlabeled training, val and test.

    Args:
        labeled_ratio: fraction of the training cases that keep labels, in (0, 1].
        split_seed: seed of the shuffle; the only source of randomness.
        val_fraction, test_fraction: fractions of all labeled cases held out
            (each at least one case when > 0).
        use_dataset_test: take ``index.test`` (which must be labeled) as the
            test set instead of carving one out; ``test_fraction`` is ignored.
        all_labels: every training case keeps its label (fully supervised
            upper bound); ``labeled_ratio`` is then ignored for the split.
        unlabeled_pool: how many images of ``index.unlabeled`` join training
            (seeded, nested choice; see module doc); None = all, sorted by id.

    Raises:
        ValueError: a ratio or fraction out of range.
        DataError: too few cases to split, unlabeled dataset test cases, or
            fewer pool images than ``unlabeled_pool``.
    """
    if not 0.0 < labeled_ratio <= 1.0:
        raise ValueError(f"labeled_ratio must be in (0, 1], got {labeled_ratio}")
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    pool = pool_cases(index, split_seed, unlabeled_pool)
    shuffled = _shuffled_units(index, split_seed)
    n = len(shuffled)
    if use_dataset_test:
        n_test, test = 0, _dataset_test(index)
    else:
        n_test = _count(test_fraction, n)
        test = _cases(shuffled[:n_test])
    n_val = _count(val_fraction, n)
    n_train = n - n_test - n_val
    if n_train < 1:
        what = "patients" if any("patient" in c.meta for c in index.labeled) else "labeled cases"
        raise DataError(
            f"cannot split {n} {what} in {index.root}: test {n_test} + val {n_val} leave "
            f"{n_train} for training (need ≥ 1); lower val_fraction/test_fraction or add cases"
        )
    train_units = shuffled[n_test + n_val :]
    n_labeled = n_train if all_labels else max(1, round(labeled_ratio * n_train))
    train = [c for u in train_units[:n_labeled] for c in u]
    withheld = tuple(dataclasses.replace(c, label=None) for u in train_units[n_labeled:] for c in u)
    return Split(
        labeled=tuple(train), unlabeled=withheld + pool, val=_cases(shuffled[n_test : n_test + n_val]), test=test
    )


def _shuffled_units(index: DatasetIndex, split_seed: int) -> list[list[Case]]:
    """The labeled cases grouped into splitting units — the patient (``meta["patient"]``,
    else the case), so the frames/phases of one patient never straddle train, val and
    test — sorted by key, then shuffled once with ``default_rng(split_seed)``."""
    groups: dict[str, list[Case]] = {}
    for c in sorted(index.labeled, key=lambda c: c.id):
        groups.setdefault(str(c.meta.get("patient", c.id)), []).append(c)
    units = [groups[k] for k in sorted(groups)]
    return [units[i] for i in np.random.default_rng(split_seed).permutation(len(units))]


def _cases(units: list[list[Case]]) -> tuple[Case, ...]:
    """The cases of ``units``, sorted by id."""
    return tuple(sorted((c for u in units for c in u), key=lambda c: c.id))


def _dataset_test(index: DatasetIndex) -> tuple[Case, ...]:
    """``index.test`` as the test set (``use_dataset_test``): every case must be labeled."""
    if not index.test:
        raise DataError(f"use_dataset_test is set but the dataset in {index.root} has no test cases")
    unlabeled_test = [c for c in index.test if c.label is None]
    if unlabeled_test:
        raise DataError(
            f"use_dataset_test needs a label for every test case; {unlabeled_test[0].image} has none "
            f"({len(unlabeled_test)} of {len(index.test)} unlabeled)"
        )
    return tuple(sorted(index.test, key=lambda c: c.id))
