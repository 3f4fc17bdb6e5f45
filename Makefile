# wanir: `make demo` sets up .venv with the base package only and runs the default estimate;
# `make test` adds the test, reference (torch, diffusers, transformers), web and browser extras and runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base

.PHONY: demo test test-fast test-reference setup system-deps bench clean error-classes

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is pinned to the CPU build first: a looser requirement can pull a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,reference]'
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

setup: $(STAMP)

# what `wanir estimate` needs: the package and its base dependencies (no torch)
$(BASE_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $(BASE_STAMP)

# Debian's graphviz (the `dot` binary) and chromium (HTML report tests); needs root.
system-deps:
	@if ! command -v dot >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz chromium >/dev/null; \
	fi

demo: $(BASE_STAMP)
	$(BIN)/wanir estimate

# The tests, in tiers (markers in pyproject.toml; README "Tests"):
#   make test       every test (`pytest -q`): the fast tier and the reference, slow and integration tests
#   make test-fast  the fast tier, under a minute on two cores: the in-process unit and invariant tests of
#                   every module (config/resolve, graph, ops, passes, roofline, parallel, sizing, CLI parsing,
#                   limits, hostile inputs); it leaves out `reference` (the real PyTorch modules), `slow`
#                   (in-process tests over about half a second) and `integration` (the CLI in a subprocess,
#                   the web server, a browser). tests/reference and tests/test_verify.py hold only reference
#                   tests and are not even imported (that would load torch, diffusers and transformers).
#   make test-reference  only the reference tests
FAST_TESTS := -m "not reference and not slow and not integration" --ignore=tests/reference --ignore=tests/test_verify.py
# The test runs keep Python's bytecode cache, outside the tree, even where PYTHONDONTWRITEBYTECODE is set:
# without it every run compiles wanir and rewrites the test modules again (2-4 s of CPU in a fast run),
# and each CLI subprocess of the integration tests compiles wanir again (about 0.1 s of CPU each).
test test-fast test-reference: export PYTHONDONTWRITEBYTECODE :=
test test-fast test-reference: export PYTHONPYCACHEPREFIX ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/wanir/pycache

test: setup setup-web system-deps
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q $(FAST_TESTS)

test-reference: setup
	$(BIN)/python -m pytest -q -m reference

bench: setup
	$(BIN)/python benchmarks/bench_seam.py
	$(BIN)/python benchmarks/bench_estimate.py
	$(BIN)/python benchmarks/bench_size.py
	$(BIN)/python benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# `wanir serve` and its browser tests: the 'web' extra and Playwright (it drives Debian's
# chromium through executable_path; no browser is downloaded)
WEB_STAMP := $(VENV)/.installed-web
.PHONY: setup-web bench-web serve

$(WEB_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[web,browser]'
	touch $(WEB_STAMP)

setup-web: $(WEB_STAMP)

bench-web: setup-web
	$(BIN)/python benchmarks/bench_web.py

serve: setup-web
	$(BIN)/wanir serve

# the error classes of the time ranges (wanir/data/error_classes.yaml), recomputed from the shipped
# validation rows; run after a change to the time model (docs/time-model.md)
error-classes: $(BASE_STAMP)
	$(BIN)/wanir validate --write-classes
