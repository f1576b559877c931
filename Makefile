# The two commands: `make dev` (the local stack) and `make test` (everything CI checks).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
CHECKOV := $(VENV)/checkov/bin/checkov
NATIVE := build/native
RELAY_SOURCES := $(wildcard relay_container/relay/*.py storage/*.py) relay_container/build_native.py
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: dev test lint types pytest synth deploy bench fmt clean native

$(BIN)/activate: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[infra,webhooks,relay,cli,dev,native]"
	touch $(BIN)/activate

# checkov in its own environment: its pins clash with the project's (pyproject.toml `checkov`).
$(CHECKOV): pyproject.toml | $(BIN)/activate
	test -d $(VENV)/checkov || $(PY) -m venv $(VENV)/checkov
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['checkov']))" > $(VENV)/checkov/requirements.txt
	$(VENV)/checkov/bin/pip install -q -r $(VENV)/checkov/requirements.txt
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

dev: $(BIN)/activate  ## run the local stack: DynamoDB-compatible server, webhook app, relay, simulated model
	$(BIN)/voicebot dev

test: lint types pytest synth  ## what CI runs

lint: $(BIN)/activate
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

types: $(BIN)/activate
	$(BIN)/mypy

pytest: $(BIN)/activate node_modules/.installed $(NATIVE)/.built $(CHECKOV)
	$(BIN)/pytest -m "not bench"
	@echo "The relay's tests and the browser tests again, on its mypyc build (what the image ships):"
	PYTHONPATH=$(CURDIR)/$(NATIVE) RELAY_EXPECT_COMPILED=1 $(BIN)/pytest -m "not bench" -q tests/relay tests/e2e

native: $(NATIVE)/.built  ## the relay's per-message modules compiled with mypyc (as in the image)

$(NATIVE)/.built: $(BIN)/activate $(RELAY_SOURCES)
	$(BIN)/python relay_container/build_native.py --out $(NATIVE)
	touch $@

synth: $(BIN)/activate node_modules/.installed $(CHECKOV)  ## offline synth (no Docker, no AWS credentials) + cdk-nag + cfn-lint + checkov
	rm -rf cdk.out
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) synth --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation $$(printf -- '-f %s ' cdk.out/*.template.json)

deploy: synth  ## needs AWS credentials and Docker (for the relay image)
	$(BIN)/python -m infra.preflight --engine "$${CDK_DOCKER:-docker}" $(ARGS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK) deploy --require-approval never $(ARGS)

bench: $(BIN)/activate node_modules/.installed $(NATIVE)/.built
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.relay_hot_path
	PYTHONPATH=$(CURDIR)/$(NATIVE) $(BIN)/python -m bench.relay_hot_path
	$(BIN)/python -m bench.relay_load --target relay native splice

fmt: $(BIN)/activate
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf cdk.out .mypy_cache .ruff_cache .pytest_cache $(NATIVE)
