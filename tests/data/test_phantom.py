"""The synthetic abdominal CT phantom: anatomy, intensities, orientation, files."""

from __future__ import annotations

import dataclasses
import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from vrsearch.data import phantom
from vrsearch.data import phantom_anatomy as anat
from vrsearch.data import phantom_body as pb
from vrsearch.data import phantom_cohort as cohort
from vrsearch.data import phantom_render as render
from vrsearch.data.phantom import (
    LABEL_NAMES,
    ORGANS,
    PhantomConfig,
    gallbladder_absent,
    generate_case,
    write_phantom,
)
from vrsearch.data.prepare import dataset_index
from vrsearch.errors import DataError
from vrsearch.study.schema import DatasetConfig

SMALL = dict(size=(64, 64, 40), spacing=(5.0, 5.0, 6.4))
TINY = PhantomConfig(cases=3, unlabeled=2, test=1, seed=5, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
GB = 9
POPULATIONS = ("cohort", "classic")


def absent(cfg: PhantomConfig, index: int) -> set[int]:
    gb = gallbladder_absent(cfg.seed, index)
    if cfg.population == "classic":
        return {GB} if gb else set()
    return set(cohort.absent_organs(cfg.seed, index, gb))


def centroid_mm(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    ijk = np.argwhere(label == value).mean(0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.fixture(scope="module")
def default_cases():
    """Four classic subjects at the default resolution (volumes are in true mL)."""
    cfg = PhantomConfig(population="classic")
    return cfg, [generate_case(i, cfg) for i in range(4)]


@pytest.fixture(scope="module")
def cohort_cases():
    """Twelve cohort subjects on the SMALL grid, with the tissue map each was scanned from."""
    cfg = PhantomConfig(seed=0, **SMALL)
    return cfg, [render._render(i, cfg) for i in range(12)]


def test_table_and_names_follow_flare22_order():
    assert [o.label for o in ORGANS] == list(range(1, 14))
    assert LABEL_NAMES[0] == "background" and LABEL_NAMES[1] == "liver" and LABEL_NAMES[13] == "left_kidney"
    assert [LABEL_NAMES[i] for i in (2, 3, 7, 8, 9, 11)] == [
        "right_kidney",
        "spleen",
        "right_adrenal",
        "left_adrenal",
        "gallbladder",
        "stomach",
    ]


@pytest.mark.parametrize("population", POPULATIONS)
def test_same_seed_same_case_other_seed_or_index_differs(population):
    cfg = PhantomConfig(seed=7, population=population, **SMALL)
    a_img, a_lab, a_aff = generate_case(2, cfg)
    b_img, b_lab, b_aff = generate_case(2, cfg)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab) and np.array_equal(a_aff, b_aff)
    c_img, c_lab, _ = generate_case(2, dataclasses.replace(cfg, seed=8))
    assert not np.array_equal(a_lab, c_lab) and not np.array_equal(a_img, c_img)
    d_img, d_lab, _ = generate_case(3, cfg)
    assert not np.array_equal(a_lab, d_lab)
    # the case count does not change a subject
    assert np.array_equal(generate_case(2, dataclasses.replace(cfg, cases=2, unlabeled=0))[1], a_lab)
    # the populations are different subjects
    other = "classic" if population == "cohort" else "cohort"
    assert not np.array_equal(generate_case(2, dataclasses.replace(cfg, population=other))[1], a_lab)


def test_same_seed_same_bytes_on_disk(tmp_path):
    a, b = write_phantom(tmp_path / "a", TINY), write_phantom(tmp_path / "b", TINY)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 3 + 3 + 2 + 1 + 1 + 2  # images, labels, unlabeled, test pair, dataset.json, phantom.json
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("index", [0, 1, 3, 11])
def test_types_and_all_organs_present(index, population):
    cfg = PhantomConfig(seed=0, population=population, **SMALL)
    image, label, affine = generate_case(index, cfg)
    assert image.dtype == np.int16 and label.dtype == np.uint8 and affine.dtype == np.float64
    assert image.shape == label.shape == cfg.size and label.max() <= 13
    assert set(np.unique(label).tolist()) == set(range(14)) - absent(cfg, index)
    assert image.min() >= -1024 and image.max() > 400  # air floor, bone
    if population == "cohort" and index == 11:  # the right kidney was removed (nephrectomy)
        assert absent(cfg, index) == {2}


def _volumes(cfg, cases) -> np.ndarray:
    """(subjects, 14) label volumes in mL."""
    return np.array([np.bincount(c[1].ravel(), minlength=14) * float(np.prod(cfg.spacing)) / 1000 for c in cases])


@pytest.mark.parametrize("population", POPULATIONS)
def test_organ_volumes_have_the_long_tail(population, default_cases, cohort_cases):
    cfg, cases = default_cases if population == "classic" else cohort_cases
    vols = _volumes(cfg, cases)
    v = dict(zip(LABEL_NAMES.values(), np.median(vols, axis=0) if population == "cohort" else vols.mean(0)))
    kidneys = min(v["right_kidney"], v["left_kidney"])
    assert v["liver"] > v["stomach"] > v["spleen"] > kidneys
    assert kidneys > max(v["aorta"], v["pancreas"], v["duodenum"])
    assert min(v["aorta"], v["pancreas"], v["duodenum"]) > max(v["gallbladder"], v["esophagus"])
    assert min(v["gallbladder"], v["esophagus"]) > max(v["right_adrenal"], v["left_adrenal"])
    assert 900 < v["liver"] < 2200
    assert 1 < v["right_adrenal"] < 10 and 1 < v["left_adrenal"] < 10
    assert v["liver"] / max(v["right_adrenal"], v["left_adrenal"]) > 100


@pytest.mark.parametrize("population", POPULATIONS)
def test_volumes_track_the_table_per_subject(population, default_cases, cohort_cases):
    cfg, cases = default_cases if population == "classic" else cohort_cases
    # drawn volumes are log-normal around the table (sigma <= 0.4; x1.3 in the cohort)
    reach = 3.5 if population == "classic" else 4.5
    for counts in _volumes(cfg, cases):
        for o in ORGANS:
            if counts[o.label] > 0:
                assert o.volume_ml / reach < counts[o.label] < o.volume_ml * reach, o.name


def test_classic_hu_means_and_contrasts(default_cases):
    _, cases = default_cases
    for image, label, _ in cases:
        mean = {o.name: float(image[label == o.label].mean()) for o in ORGANS if (label == o.label).any()}
        core = {
            o.name: float(image[ndimage.binary_erosion(label == o.label)].mean())
            for o in ORGANS
            if o.label in (1, 2, 3, 5, 13)
        }
        assert abs(mean["liver"] - 105) < 25
        for o in ORGANS:
            if o.name in core:
                assert abs(core[o.name] - o.hu_mean) < 35, o.name
        assert core["right_kidney"] > mean["liver"] > mean.get("gallbladder", -100)
        assert image[0, 0, 0] < -900  # air in the corner
        # anterior subcutaneous fat: 2-3 voxels (7-10 mm) below the skin along each column
        skin = np.argmax(image[:, ::-1, :] > -500, axis=1)  # first body voxel from anterior
        xs, zs = np.nonzero(skin > 0)
        xs, zs = xs[np.abs(xs - image.shape[0] // 2) < 8], zs[np.abs(xs - image.shape[0] // 2) < 8]
        ny = image.shape[1]
        fat = [image[x, ny - 1 - skin[x, z] - d, z] for x, z in zip(xs, zs) for d in (2, 3)]
        assert np.median(fat) < -50


@pytest.mark.parametrize("population", POPULATIONS)
def test_orientation_is_ras(population, default_cases, cohort_cases):
    cfg, cases = default_cases if population == "classic" else cohort_cases
    affine = phantom.phantom_affine(cfg)
    assert np.allclose(affine[:3, :3], np.diag(cfg.spacing))
    assert np.allclose(affine[:3, :3] @ (np.array(cfg.size) - 1) / 2 + affine[:3, 3], 0)  # centred
    for _, label, *_ in cases:
        c = {o.name: centroid_mm(label, affine, o.label) for o in ORGANS if (label == o.label).any()}
        kidneys = [c[k] for k in ("right_kidney", "left_kidney") if k in c]  # cohort: maybe one removed
        assert c["liver"][0] < 0 < c.get("spleen", [1.0])[0]  # patient's right is -x in RAS
        assert c.get("right_kidney", [-1.0])[0] < 0 < c.get("left_kidney", [1.0])[0]
        assert c["right_adrenal"][0] < c["left_adrenal"][0]
        assert max(k[1] for k in kidneys) < c["stomach"][1]  # kidneys posterior
        assert c["liver"][2] > max(k[2] for k in kidneys)  # liver superior
        assert c["aorta"][1] < c["pancreas"][1]


def test_gallbladder_absent_sometimes_but_rarely():
    for seed in range(5):
        absent = [i for i in range(24) if gallbladder_absent(seed, i)]
        assert 1 <= len(absent) <= 6, (seed, absent)
    rate = np.mean([gallbladder_absent(s, i) for s in range(10) for i in range(96)])
    assert 0.05 < rate < 0.13
    cfg = PhantomConfig(seed=0, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
    gone = next(i for i in range(24) if gallbladder_absent(0, i))
    kept = next(i for i in range(24) if not gallbladder_absent(0, i))
    assert not (generate_case(gone, cfg)[1] == GB).any()
    assert (generate_case(kept, cfg)[1] == GB).any()


def test_cohort_absent_organs_at_their_rates():
    """Simulation: each absence's frequency over 4000 subjects within 4 binomial sd of its
    documented rate (gallbladder: ~8 % plus the one-per-block rule, as classic)."""
    keys = [(s, i) for s in range(10) for i in range(400)]
    gone = [cohort.absent_organs(s, i, gallbladder_absent(s, i)) for s, i in keys]
    for label, p in ((2, 0.03), (13, 0.03), (3, 0.03)):
        rate = np.mean([label in g for g in gone])
        assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / len(keys)), (label, rate)
    assert 0.05 < np.mean([GB in g for g in gone]) < 0.13
    # and the generated subject really lacks them
    cfg = PhantomConfig(seed=0, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
    index = next(i for i in range(400) if {2, 3, 13} & absent(cfg, i))
    label = generate_case(index, cfg)[1]
    assert set(np.unique(label).tolist()) == set(range(14)) - absent(cfg, index)


def test_cohort_scans_follow_their_distributions():
    """Simulation over 3000 subjects: scanners uniform, phases and slice thicknesses at their
    probabilities (each within 4 binomial sd), scan draws independent of the seed's anatomy."""
    acqs = [cohort.acquisition(s, i) for s in range(3) for i in range(1000)]
    n = len(acqs)
    for values, options, probs in (
        ([a.scanner for a in acqs], range(len(cohort.SCANNERS)), [1 / len(cohort.SCANNERS)] * 5),
        ([a.phase for a in acqs], cohort.PHASES, cohort.PHASE_P),
        ([a.slice_mm for a in acqs], cohort.SLICE_MM, cohort.SLICE_P),
    ):
        for option, p in zip(options, probs):
            assert abs(np.mean([v == option for v in values]) - p) < 4 * np.sqrt(p * (1 - p) / n), option
    noise = np.array([a.noise_hu for a in acqs])
    assert 8 <= noise.min() and noise.max() <= 30 and abs(np.median(noise) - np.sqrt(8 * 30)) < 1.0
    assert abs(np.mean([a.oral_contrast > 0 for a in acqs]) - 0.2) < 4 * np.sqrt(0.16 / n)


def _scan(**changes) -> cohort.Acquisition:
    base = dict(
        scanner=0,
        phase="portal_venous",
        enhancement=1.0,
        oral_contrast=0.0,
        slice_mm=1.0,
        noise_hu=8.0,
        noise_corr=0.5,
        bias_hu=0.0,
        cupping_hu=0.0,
    )
    return cohort.Acquisition(**{**base, **changes})


def _core_median(image, mask) -> float:
    return float(np.median(image[ndimage.binary_erosion(mask)]))


def test_cohort_per_scanner_calibration(monkeypatch):
    """Each scanner's calibration is ``slope * HU + offset`` of its table row: voxel by voxel
    against an uncalibrated twin (same kernel and noise), up to rounding; and between real
    scanners, the subject's fat and liver move by the table's calibration."""
    cfg = PhantomConfig(seed=0, **SMALL)
    twins = tuple(dataclasses.replace(sc, slope=1.0, offset=0.0) for sc in cohort.SCANNERS)
    monkeypatch.setattr(cohort, "SCANNERS", cohort.SCANNERS + twins)
    n = len(twins)
    ref_img, ref_lab, tissue = render._render(1, cfg, _scan(phase="non_contrast"))
    fat, liver = _core_median(ref_img, tissue == pb.FAT), _core_median(ref_img, ref_lab == 1)
    for k in range(n):
        scanner = cohort.SCANNERS[k]
        img, lab, _ = render._render(1, cfg, _scan(phase="non_contrast", scanner=k))
        twin = render._render(1, cfg, _scan(phase="non_contrast", scanner=n + k))[0].astype(float)
        assert np.array_equal(lab, ref_lab)
        inside = (img > -1024) & (twin > -1000)  # not clipped
        assert inside.mean() > 0.5
        assert np.abs(img[inside] - (scanner.slope * twin[inside] + scanner.offset)).max() <= 1.05, scanner.name
        # unenhanced: the scanner changes nothing but kernel, noise and calibration
        for hu, mask in ((fat, tissue == pb.FAT), (liver, ref_lab == 1)):
            assert abs(_core_median(img, mask) - (scanner.slope * hu + scanner.offset)) < 4, scanner.name


def test_cohort_contrast_phases():
    """One subject in each phase: the aorta is brightest in the arterial phase and darkest
    unenhanced; the kidneys enhance more than the liver in every contrast phase; bile does not."""
    cfg = PhantomConfig(seed=0, **SMALL)
    core = {}
    for phase in cohort.PHASES:
        img, lab, _ = render._render(0, cfg, _scan(phase=phase))
        core[phase] = {k: _core_median(img, lab == k) for k in (1, 2, 5, GB, 13)}
    aorta = [core[p][5] for p in ("arterial", "portal_venous", "delayed", "non_contrast")]
    assert aorta == sorted(aorta, reverse=True) and aorta[0] - aorta[-1] > 200
    for phase in ("arterial", "portal_venous", "delayed"):  # enhancement: the subject's own HU cancel
        gain = {k: core[phase][k] - core["non_contrast"][k] for k in (1, 2, 13)}
        assert min(gain[2], gain[13]) > gain[1] + 30, phase
    bile = [core[p][GB] for p in cohort.PHASES]
    assert max(bile) - min(bile) < 15


def test_cohort_varies_more_than_classic(default_cases, cohort_cases):
    """The point of the cohort: across subjects, the aorta's HU, the liver's position and the
    body's size spread several times more than in the classic population."""

    def spread(cfg, cases):
        aff = phantom.phantom_affine(cfg)
        aorta = [_core_median(img, lab == 5) for img, lab, *_ in cases]
        liver_z = [centroid_mm(lab, aff, 1)[2] for _, lab, *_ in cases]
        body = [(img > -500).sum() * float(np.prod(cfg.spacing)) / 1e6 for img, *_ in cases]  # litres in view
        return np.std(aorta), np.std(liver_z), np.std(body) / np.mean(body)

    classic = spread(*default_cases)
    cohort_spread = spread(*cohort_cases)
    assert cohort_spread[0] > 3 * classic[0] and cohort_spread[0] > 40
    assert cohort_spread[1] > 1.5 * classic[1]
    assert cohort_spread[2] > 1.5 * classic[2]


def test_cohort_anatomy_does_not_depend_on_grid_or_scan():
    """Resolution and field of view change how a subject is sampled, not the subject: organ
    centroids agree within a coarse voxel and volumes within 15 % between two grids."""
    fine, coarse = PhantomConfig(seed=4, **SMALL), PhantomConfig(seed=4, size=(40, 40, 28), spacing=(8.0, 8.0, 9.2))
    for index in (0, 5):
        (_, a, _), (_, b, _) = generate_case(index, fine), generate_case(index, coarse)
        va, vb = _volumes(fine, [(None, a)])[0], _volumes(coarse, [(None, b)])[0]
        for o in ORGANS:
            if va[o.label] > 100:
                assert abs(va[o.label] / vb[o.label] - 1) < 0.15, o.name
                dist = centroid_mm(a, phantom.phantom_affine(fine), o.label) - centroid_mm(
                    b, phantom.phantom_affine(coarse), o.label
                )
                assert np.linalg.norm(dist) < 9.2, o.name


@pytest.mark.parametrize("population", POPULATIONS)
def test_piecewise_tube_sdf_equals_the_full_one(population):
    """The fast path (each tube segment in its own box) equals the full evaluation wherever a
    threshold can look (sdf <= 10 mm; thresholds stay within ~0.3 x thickness + 0.75 voxel)
    and never undercuts it elsewhere."""
    cfg = PhantomConfig(seed=2, population=population, **SMALL)
    for index in (0, 1):
        subj, *_, frames = render._pose(index, cfg)
        shapes = [(o, o) for o in ORGANS if o.tube is not None and subj["organs"][o.label]["volume"] > 0]
        shapes += [(anat.ORGAN_BY_LABEL[lab], tube) for lab, tube in anat.VESSELS]
        for organ, shape in shapes:
            sl, fast = frames.evaluate(shape, frames.organ(organ))
            sl_full, full = frames.evaluate(shape, frames.organ(organ), piecewise=False)
            assert sl == sl_full and (full < 0).any()
            near = full <= 10.0
            assert np.array_equal(fast[near], full[near]) and (fast >= full).all(), organ.name


def test_write_layout_dataset_json_and_roundtrip(tmp_path):
    calls = []
    root = write_phantom(tmp_path / "ds", TINY, progress=lambda i, n: calls.append((i, n)))
    assert root == tmp_path / "ds"
    assert calls == [(i, 6) for i in range(1, 7)]
    names = lambda d: sorted(p.name for p in (root / d).iterdir())  # noqa: E731
    assert names("imagesTr") == [f"phantom_{i:03d}_0000.nii.gz" for i in range(3)]
    assert names("labelsTr") == [f"phantom_{i:03d}.nii.gz" for i in range(3)]
    assert names("imagesUnlabeled") == ["phantom_003_0000.nii.gz", "phantom_004_0000.nii.gz"]
    assert names("imagesTs") == ["phantom_005_0000.nii.gz"] and names("labelsTs") == ["phantom_005.nii.gz"]
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["name"] == "vrsearch-phantom" and ds["tensorImageSize"] == "3D" and ds["file_ending"] == ".nii.gz"
    assert ds["modality"] == {"0": "CT"} and ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {str(k): v for k, v in LABEL_NAMES.items()} and len(ds["labels"]) == 14
    assert ds["numTraining"] == 3 and ds["numTest"] == 1
    assert ds["training"][0] == {
        "image": "./imagesTr/phantom_000_0000.nii.gz",
        "label": "./labelsTr/phantom_000.nii.gz",
    }
    assert ds["test"] == [{"image": "./imagesTs/phantom_005_0000.nii.gz", "label": "./labelsTs/phantom_005.nii.gz"}]
    assert ds["unlabeled"] == [{"image": f"./imagesUnlabeled/phantom_{i:03d}_0000.nii.gz"} for i in (3, 4)]
    for entry in ds["training"] + ds["test"] + ds["unlabeled"]:
        assert all((root / p).is_file() for p in entry.values())
    assert json.loads((root / "phantom.json").read_text())["config"]["seed"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name != "ds"]  # no temporary leftovers
    # files load back with the same arrays, affine, spacing and dtypes
    image, label, affine = generate_case(5, TINY)
    img, lab = nib.load(root / "imagesTs/phantom_005_0000.nii.gz"), nib.load(root / "labelsTs/phantom_005.nii.gz")
    for nii, arr, dtype in ((img, image, np.int16), (lab, label, np.uint8)):
        assert nii.get_data_dtype() == dtype and np.asanyarray(nii.dataobj).dtype == dtype
        assert np.array_equal(np.asanyarray(nii.dataobj), arr)
        assert np.allclose(nii.affine, affine) and np.allclose(nii.header.get_zooms(), TINY.spacing)
        assert int(nii.header["qform_code"]) == 1 and int(nii.header["sform_code"]) == 1
        assert nii.header.get_xyzt_units()[0] == "mm"
        assert nib.aff2axcodes(nii.affine) == ("R", "A", "S")


def test_write_is_idempotent_and_refuses_other_content(tmp_path):
    root = write_phantom(tmp_path / "ds", TINY)
    stamp = (root / "phantom.json").stat().st_mtime_ns
    first = (root / "imagesTr/phantom_000_0000.nii.gz").stat().st_mtime_ns
    assert write_phantom(str(tmp_path / "ds"), TINY) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp
    assert (root / "imagesTr/phantom_000_0000.nii.gz").stat().st_mtime_ns == first
    with pytest.raises(FileExistsError, match="other settings"):
        write_phantom(root, dataclasses.replace(TINY, seed=6))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as err:
        write_phantom(foreign, TINY)
    assert "\n" not in str(err.value)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_phantom(empty, TINY) / "phantom.json").is_file()


def test_changed_settings_invalidate_the_data_on_disk(tmp_path):
    """Generated data is reused only while every generation setting and the generator's
    version match; otherwise one line names what differs (and a study stops with it)."""
    root = write_phantom(tmp_path / "ds", TINY)
    for field, value in (
        ("seed", 6),
        ("population", "classic"),
        ("size", (32, 32, 16)),
        ("spacing", (10.0, 10.0, 12.0)),
        ("cases", 2),
        ("unlabeled", 1),
        ("test", 0),
    ):
        with pytest.raises(FileExistsError, match=f"{field} .*, wanted") as err:
            write_phantom(root, dataclasses.replace(TINY, **{field: value}))
        assert "\n" not in str(err.value)
    stamp = json.loads((root / "phantom.json").read_text())
    (root / "phantom.json").write_text(json.dumps({**stamp, "version": 1}))  # an older generator's output
    with pytest.raises(FileExistsError, match="version 1, wanted 2"):
        write_phantom(root, TINY)
    dataset = DatasetConfig(
        root=root,
        phantom=dict(
            cases=3, unlabeled=2, test=1, seed=5, size=[32, 32, 24], spacing=[10, 10, 10.5], population="classic"
        ),
    )
    with pytest.raises(DataError, match="population cohort, wanted classic") as err:
        dataset_index(dataset)
    assert "\n" not in str(err.value)


def test_classic_stamp_is_the_one_earlier_versions_wrote(tmp_path):
    """Data written before populations existed (generator version 1) stays valid for ``population: classic``."""
    root = write_phantom(tmp_path / "ds", dataclasses.replace(TINY, population="classic"))
    assert json.loads((root / "phantom.json").read_text()) == {
        "generator": "vrsearch.data.phantom",
        "version": 1,
        "config": {
            "cases": 3,
            "unlabeled": 2,
            "test": 1,
            "seed": 5,
            "size": [32, 32, 24],
            "spacing": [10.0, 10.0, 10.5],
        },
    }


#: subject 0 of PIN per population: (PHANTOM_VERSION, label voxel counts 0-13, mean HU)
PIN = PhantomConfig(seed=1, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
FINGERPRINT = {
    "classic": (1, [21825, 1515, 146, 277, 67, 84, 44, 4, 4, 32, 13, 334, 83, 148], -429.85),
    "cohort": (2, [21591, 1388, 173, 464, 50, 71, 36, 5, 3, 25, 20, 511, 83, 156], -473.92),
}


@pytest.mark.parametrize("population", POPULATIONS)
def test_generator_output_is_pinned(population):
    """Data on disk is reused while its stamp (settings + PHANTOM_VERSION) matches, so any change
    to what a population generates must bump its version; this fingerprint notices (tolerant to
    last-bit float differences between CPUs, not to a changed generator)."""
    image, label, _ = generate_case(0, dataclasses.replace(PIN, population=population))
    counts, mean = np.bincount(label.ravel(), minlength=14), float(image.mean())
    version, want_counts, want_mean = FINGERPRINT[population]
    assert phantom.PHANTOM_VERSION[population] == version, "a new version: update FINGERPRINT"
    assert np.allclose(counts, want_counts, rtol=0.01, atol=2) and abs(mean - want_mean) < 0.5, (
        f"the {population} generator's output changed: bump PHANTOM_VERSION[{population!r}] and "
        f"update FINGERPRINT to {counts.tolist()}, {mean:.2f}"
    )


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    real, calls = phantom.generate_case, []

    def flaky(index, config):
        calls.append(index)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(index, config)

    monkeypatch.setattr(phantom, "generate_case", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        write_phantom(tmp_path / "ds", TINY)
    assert len(calls) == 3
    assert not (tmp_path / "ds").exists()
    assert os.listdir(tmp_path) == []


def test_config_validation():
    with pytest.raises(ValueError):
        PhantomConfig(size=(4, 4, 4))
    with pytest.raises(ValueError):
        PhantomConfig(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        PhantomConfig(cases=-1)
    with pytest.raises(ValueError, match="population must be one of classic, cohort"):
        PhantomConfig(population="uniform")
    assert PhantomConfig(size=[32, 32, 24], spacing=[10, 10, 10]).size == (32, 32, 24)
