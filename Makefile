# airside — every target is what CI and newcomers run; see README.md.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PYTEST ?= $(PYTHON) -m pytest

.PHONY: setup quickstart test lint bench e2e cluster cluster-down cluster-test kind-image render

setup:                ## install airside and its dev tools (editable)
	$(PIP) install -q -e '.[dev]'

quickstart: setup     ## web on SQLite + one local worker; Ctrl-C drains and stops
	airside quickstart

# With CI=true (.ci/run exports it) a skipped test fails the run unless tools/ci/skips.allow names it with a
# reason (tools/ci/skipguard.py, registered by tests/conftest.py), in every target below that runs pytest.
test:                 ## unit + integration tests (real PostgreSQL started by the fixtures)
	$(PYTEST) tests/unit tests/integration

lint:                 ## ruff, import-linter layer contracts, mypy (pyproject [tool.mypy]), no new public Any
	ruff check src tests bench tools
	lint-imports
	$(PYTHON) -m mypy
	$(PYTHON) tools/lint/public_any.py

bench:                ## benchmarks; each prints ratios against a baseline measured in the same run
	$(PYTHON) bench/heartbeats.py
	$(PYTHON) bench/volumes.py      # as root: drivers vs cp -a, streams vs a tar pipe
	$(PYTHON) bench/runtime.py      # as root: the oci runtime vs runc run
	$(PYTHON) bench/execute.py      # as root: airside execute vs runc run
	$(PYTHON) bench/k8s_job.py      # with a cluster: a Job task vs kubectl run

e2e:                  ## end to end on kind: image built + loaded, the chart installed per test module
	bash tools/docker/dockerd-up.sh
	$(PYTEST) -m e2e tests/e2e -v -p no:cacheprovider

cluster:              ## build the offline kind toolchain (cached) and create a cluster
	bash tools/kind/cluster-up.sh

cluster-down:         ## delete the kind cluster
	bash tools/kind/cluster-down.sh

cluster-test:         ## create the cluster (or use KUBECONFIG) and check nodes, Job, PVC, DNS
	$(PYTEST) -m kind tests/kind -v

kind-image:           ## build the airside + postgres images from this checkout and load them into the kind nodes (cached)
	bash tools/docker/dockerd-up.sh
	$(PYTHON) -m tests.kubecluster images

render:               ## regenerate the committed chart/, docker/ and bosh/ from src/airside/packaging
	$(PYTHON) -m airside.cli render --target helm && $(PYTHON) -m airside.cli render --target compose && $(PYTHON) -m airside.cli render --target bosh
