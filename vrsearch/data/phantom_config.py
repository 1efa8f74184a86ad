"""What the synthetic phantom generator is asked for (:class:`PhantomConfig`) and
which generator versions exist (:data:`PHANTOM_VERSION`); a leaf that the
generator's modules (:mod:`vrsearch.data.phantom`, ``phantom_render``) share."""

from __future__ import annotations

from dataclasses import dataclass

#: generator version per population: bump it whenever the bytes a population generates change,
#: so that data written by an older generator is never taken for the current one
#: (``tests/data/test_phantom.py::test_generator_output_is_pinned`` fails until you do)
PHANTOM_VERSION = {"classic": 1, "cohort": 2}
POPULATIONS = tuple(PHANTOM_VERSION)


@dataclass(frozen=True)
class PhantomConfig:
    """What to build; subjects are numbered labeled, then unlabeled, then test."""

    cases: int = 24
    unlabeled: int = 24
    test: int = 0
    seed: int = 0
    size: tuple[int, int, int] = (96, 96, 64)
    spacing: tuple[float, float, float] = (3.5, 3.5, 4.0)
    #: ``cohort``: subjects and scans vary like a multi-centre cohort (:mod:`~vrsearch.data.phantom_cohort`);
    #: ``classic``: the original population, generator version 1 (one body, one scanner, portal-venous)
    population: str = "cohort"

    def __post_init__(self):
        if self.population not in POPULATIONS:
            raise ValueError(f"population must be one of {', '.join(POPULATIONS)}, got {self.population!r}")
        object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        if len(self.size) != 3 or min(self.size) < 8:
            raise ValueError(f"size must be three ints >= 8, got {self.size}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be three positive floats, got {self.spacing}")
        if min(self.cases, self.unlabeled, self.test, self.seed) < 0:
            raise ValueError("cases, unlabeled, test and seed must be >= 0")
        if self.cases + self.unlabeled + self.test > 1000:
            raise ValueError("at most 1000 subjects (three-digit case ids)")
