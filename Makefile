# airside — every target is what CI and newcomers run; see README.md.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PYTEST ?= $(PYTHON) -m pytest

.PHONY: setup quickstart test lint bench e2e cluster cluster-down cluster-test render

setup:                ## install airside and its dev tools (editable)
	$(PIP) install -q -e '.[dev]'

quickstart: setup     ## web on SQLite + one local worker; Ctrl-C drains and stops
	airside quickstart

test:                 ## unit + integration tests (real PostgreSQL started by the fixtures)
	$(PYTEST) tests/unit tests/integration

lint:                 ## ruff + import-linter layer contracts
	ruff check src tests bench
	lint-imports

bench:                ## benchmarks; each prints ratios against a baseline run in the same process
	$(PYTHON) bench/heartbeats.py

e2e:                  ## end to end on kind (issue 9): not built yet
	@echo "make e2e: not built yet. It will build the airside image, create a kind cluster with tools/kind,"
	@echo "install the chart per test module and run tests/e2e (registration, draining, naive vs overlay,"
	@echo "a Job-based task run). Until then: 'make cluster-test' checks the offline kind toolchain."

cluster:              ## build the offline kind toolchain (cached) and create a cluster
	bash tools/kind/cluster-up.sh

cluster-down:         ## delete the kind cluster
	bash tools/kind/cluster-down.sh

cluster-test:         ## create the cluster (or use KUBECONFIG) and check nodes, Job, PVC, DNS
	$(PYTEST) -m kind tests/kind -v

render:               ## regenerate the committed chart/, docker/ and bosh/ from src/airside/packaging
	$(PYTHON) -m airside.cli render --target helm && $(PYTHON) -m airside.cli render --target compose && $(PYTHON) -m airside.cli render --target bosh
