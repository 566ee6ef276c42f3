# Every developer task behind one command. `make help` lists them.
# The virtualenv is created on first use, so a fresh clone needs nothing installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install check lint typecheck test test-unit test-e2e conformance vllm-flags crds golden docs sandbox sandbox-down bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with test and dev extras

check: lint typecheck ## ruff, hadolint, mypy strict and the import contracts

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/hadolint Dockerfile

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: test-unit test-e2e ## all tests: unit, then e2e on the sandbox (built on first use)

test-unit: $(STAMP) ## pure tests and tests on real loopback sockets
	$(BIN)/pytest tests/unit

test-e2e: $(STAMP) ## tests against the sandbox's real control plane
	$(BIN)/llmservice sandbox build
	$(BIN)/pytest tests/e2e

conformance: $(STAMP) ## the real vLLM (CPU build, installed once) against the args, simulator and router
	$(BIN)/llmservice sandbox build --engine vllm
	$(BIN)/pytest tests/conformance --durations=8

vllm-flags: $(STAMP) ## regenerate the owned vLLM flags' spellings from vLLM's parser (needs the engine)
	$(BIN)/llmservice sandbox build --engine vllm
	$(BIN)/python -m tests.conformance.owned_flags

crds: $(STAMP) ## regenerate crds/ (and its copies in deploy/ and the Helm chart) from the API models
	$(BIN)/llmservice crd --output crds/llmservices.serving.llmservice.dev.yaml
	$(BIN)/llmservice crd --output deploy/crd.yaml
	$(BIN)/llmservice crd --output deploy/helm/llmservice-operator/crds/llmservices.serving.llmservice.dev.yaml

golden: $(STAMP) ## regenerate the golden files of the rendered examples
	$(BIN)/python -m tests.unit.golden

docs: $(STAMP) ## regenerate the field reference in README.md
	$(BIN)/llmservice docs --update README.md

sandbox: $(STAMP) ## bring up the sandbox with the operator and an example
	$(BIN)/llmservice sandbox up

sandbox-down: $(STAMP) ## stop every sandbox process and remove its files
	$(BIN)/llmservice sandbox down

bench: $(STAMP) ## how to run the benchmarks (see bench/README.md; noisy: read ratios)
	@sed -n '/^    .venv/p; /^    PATH/p' bench/README.md

clean: ## remove caches and the virtualenv
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
