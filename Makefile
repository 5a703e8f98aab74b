# Two commands a newcomer needs: `make demo` and `make test`. Both set everything up from nothing
# (virtual env, dependencies, native build) and are quick when already set up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.stamp-deps
NATIVE := $(VENV)/.stamp-native
NATIVE_SRC := $(shell find csrc -type f 2>/dev/null) CMakeLists.txt setup.py
PYTEST_ARGS ?=

.PHONY: demo test build lint bench asan clean

demo: $(NATIVE)
	$(BIN)/segrt demo

test: $(NATIVE)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(DEPS)
	$(BIN)/ruff check .

build: $(NATIVE)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned (a looser pin pulls a multi-GB CUDA build); the editable install builds engine._C.
$(DEPS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0 "pybind11>=2.12" "setuptools>=77" wheel
	$(BIN)/pip install -q --no-build-isolation -e ".[train,dev]"
	touch $@

$(NATIVE): $(DEPS) $(NATIVE_SRC)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

bench: $(NATIVE)
	$(BIN)/python -m pytest -q benchmarks --benchmark-only

# The kernel tests against an -fsanitize=address,undefined build (rebuilt normally afterwards by `make build`).
asan: $(DEPS)
	SEGRT_SANITIZE=1 SEGRT_CUDA=OFF $(BIN)/python setup.py -q build_ext --inplace --build-temp build/asan
	rm -f $(NATIVE)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0 $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/test_ops.py tests/test_ops_errors.py tests/test_cca.py tests/test_resize_op.py

clean:
	rm -rf build $(VENV) engine/_C*.so demo_out work_dirs
