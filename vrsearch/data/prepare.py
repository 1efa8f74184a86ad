"""From a study's dataset section to a checked, split dataset.

The built-in phantom is generated on first use (idempotently) into
``dataset.root``; every other layout is read from disk. All files are
checked before any training starts, so bad data stops a study with one line
naming the file instead of crashing a trial later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vrsearch.core.config import DatasetConfig
from vrsearch.core.step import DataNeeds
from vrsearch.data.cases import DatasetIndex
from vrsearch.data.intensity import resolve
from vrsearch.data.layouts import read_dataset
from vrsearch.data.splits import Split, make_split, pool_cases
from vrsearch.data.validate import check_dataset
from vrsearch.errors import DataError


@dataclass(frozen=True)
class PreparedData:
    index: DatasetIndex
    split: Split
    #: the study's dataset section with the intensity settings resolved for the modality
    dataset: DatasetConfig

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.index.labels[i] for i in range(self.index.num_classes))


#: where a layout's unlabeled images come from, for the message when there are none
_NO_POOL = {
    "msd": "{root}/dataset.json 'unlabeled' lists no images",
    "phantom": "{root}/dataset.json 'unlabeled' lists no images",
    "nnunet": "no images in {root}/imagesUnlabeled",
    "flare22": "no images in {root}/Training/*Unlabeled*",
}


def dataset_index(cfg: DatasetConfig) -> DatasetIndex:
    """Read the dataset (generating the phantom first when the layout is ``phantom``)."""
    if cfg.layout == "phantom":
        from vrsearch.data.phantom import PhantomConfig, write_phantom

        opts = cfg.phantom
        try:
            write_phantom(
                cfg.root,
                PhantomConfig(
                    cases=opts.cases,
                    unlabeled=opts.unlabeled,
                    test=opts.test,
                    seed=opts.seed,
                    size=opts.size,
                    spacing=opts.spacing,
                    population=opts.population,
                ),
            )
        except (FileExistsError, ValueError) as exc:
            raise DataError(str(exc)) from None
        return read_dataset("msd", cfg.root)
    return read_dataset(cfg.layout, cfg.root)


def _check_meta(split: Split, needs: DataNeeds, method: str, index: DatasetIndex) -> None:
    """Every training case carries the meta-labels the method reads."""
    for key in needs.meta:
        missing = [c for c in (*split.labeled, *split.unlabeled) if key not in c.meta]
        if missing:
            raise DataError(
                f"method {method} reads the '{key}' meta-label, but {len(missing)} training cases of "
                f"{index.root} have none (e.g. {missing[0].id}); the acdc layout provides 'phase'"
            )


def prepare_data(
    cfg: DatasetConfig, *, method: str, needs: DataNeeds = DataNeeds(), check: bool = True
) -> PreparedData:
    """Index, check and split the dataset of a study for a method with ``needs``
    (``cfg.unlabeled_pool`` picks how many of the dataset's own unlabeled images join
    training)."""
    index = dataset_index(cfg)
    if check:
        checked = index
        if cfg.unlabeled_pool is not None:  # read only the pool images that are used
            checked = dataclasses.replace(index, unlabeled=pool_cases(index, cfg.split_seed, cfg.unlabeled_pool))
        check_dataset(checked, need_unlabeled=False, workers=2, method=method)
    split = make_split(
        index,
        labeled_ratio=cfg.labeled_ratio,
        split_seed=cfg.split_seed,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        use_dataset_test=cfg.use_dataset_test,
        all_labels=needs.all_labels,
        unlabeled_pool=cfg.unlabeled_pool,
    )
    _check_meta(split, needs, method, index)
    if needs.unlabeled and not split.unlabeled:
        pool = (
            "dataset.unlabeled_pool is 0"
            if cfg.unlabeled_pool == 0
            else _NO_POOL.get(cfg.layout, "no unlabeled pool").format(root=index.root)
        )
        raise DataError(
            f"method {method} needs unlabeled cases; none in {index.root} "
            f"({pool} and labeled_ratio {cfg.labeled_ratio} keeps every training label)"
        )
    if not split.val:
        raise DataError(
            f"no validation cases: dataset.val_fraction {cfg.val_fraction} gives none of "
            f"{len(index.labeled)} labeled cases in {index.root}"
        )
    return PreparedData(index, split, resolve(cfg, index.modality))
