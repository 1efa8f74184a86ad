# Two commands on a fresh machine (Python 3.11):
#   make quickstart   set up .venv and run the quickstart (a 3-minute search + baseline) on the built-in phantom
#   make test         set up .venv (with test extras), lint and type-check, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Which torch build: the CPU wheels by default (enough for the quickstart, the tests and CPU
# studies; PyPI's Linux wheel would be the CUDA build with several GB of NVIDIA libraries).
# On a GPU node: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu130 (the CUDA
# version your driver supports), or TORCH_INDEX=https://pypi.org/simple. After changing it,
# rm -r .venv first.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu

SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup browser realdata quickstart lint test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	# torch first, pinned, from TORCH_INDEX (pip's own find-links/indexes are still consulted)
	$(BIN)/python -m pip install --quiet --quiet torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX)
	# PYTHONWARNINGS: no setuptools banner about editable installs
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# headless Chromium (Debian's package) for the report's browser test
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# real scanner files for the real-file smoke test (tests/e2e/test_realfiles.py): Debian's
# mricron-data (Colin27 T1 + AAL atlas, macaque T1) and insighttoolkit5-examples (a T1 in
# LSA axes; its files live under /usr/share/doc, which a dpkg path-exclude would drop)
REALDATA_FILES := /usr/share/mricron/templates/ch2.nii.gz \
                  /usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz
realdata:
	@ls $(REALDATA_FILES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends mricron-data insighttoolkit5-examples; }

# the search, its labeled-only baseline, the table against it and the summary in plain words
quickstart: $(STAMP)
	$(BIN)/vrsearch run studies/quickstart.yaml --fresh
	$(BIN)/vrsearch run studies/quickstart_labeled_only.yaml --fresh
	$(BIN)/vrsearch table runs/quickstart --baseline-run runs/quickstart_labeled_only --split val
	$(BIN)/vrsearch summary runs/quickstart --baseline-run runs/quickstart_labeled_only

# lint, format and types (settings in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check vrsearch tests benchmarks
	$(BIN)/ruff format --check vrsearch tests benchmarks
	$(BIN)/mypy

# the suite in TEST_WORKERS processes (pytest-xdist): one test file at a time per process, the longest
# first, and the files that read one shared session study in one process, so it runs once (the
# scheduler: tests/conftest.py);
# most of an end-to-end test's time is Ray and interpreter start-up, which two processes overlap
TEST_WORKERS ?= 2
test: $(STAMP) browser realdata lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
