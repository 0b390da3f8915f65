# Two entry points (see README Quickstart): `make demo` and `make test`; `make docs` serves the manual.
# Each creates .venv and installs what it needs. TORCH_SPEC picks the torch build:
# the default pins the CPU wheel; e.g. `make TORCH_SPEC="torch" demo` for a CUDA machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install docs docs-build screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools

$(STAMP): $(BIN)/python setup.py
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vi_stream demo

# Three processes, each test file whole in one of them (its module fixtures are built once): on two cores
# a third keeps them busy while the others wait on servers and timeouts (docs/development.md); TEST_JOBS=0
# runs the suite in this process (a debugger, -x, or a machine with one core). The 25 slowest tests are
# listed at the end: the suite is kept well under 15 minutes, and CI's log says where the time goes.
# torch computes on one thread in each test process (OMP_NUM_THREADS=1): three processes and the daemons
# they start already fill the two cores, and torch's own pool only contended with them (13:09 against
# 13:56 for the same suite, docs/development.md).
TEST_JOBS ?= 3
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --durations=25 tests $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The manual's and README's screenshots, taken by the browser tests as they click through the page.
screenshots: $(STAMP)
	VI_STREAM_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/web/test_web.py \
		tests/web/test_page_review.py tests/web/test_page_monitor.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache site
