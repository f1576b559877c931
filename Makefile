# `make dev` (the local stack), `make test` (everything CI checks), `make deploy` (your AWS
# account). `make help` lists every target with its one line.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
CHECKOV := $(VENV)/checkov/bin/checkov
NATIVE := build/native
RELAY_SOURCES := $(wildcard relay_container/relay/*.py storage/*.py) relay_container/build_native.py
#: Stack name, as `cdk deploy` and `voicebot` see it.
STACK ?= RecallVoiceAgent
#: cdk's --require-approval: `broadening` (cdk's default) asks before IAM or security-group
#: changes that widen access; `make deploy APPROVAL=never` for unattended runs.
APPROVAL ?= broadening
#: Extra cdk arguments, e.g. `make deploy ARGS="-c alarm_email=ops@example.com"`.
ARGS ?=
#: Extra `voicebot dev` arguments, e.g. `make dev DEV_ARGS="--relay-port 9080 -v"`.
DEV_ARGS ?=
#: A scripted meeting `make dev` replays once the stack is up, e.g. `make dev MEETING=examples/meeting.yaml`.
MEETING ?=
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1
# cdk runs the app with the project's venv (scripts/cdk-app); the PATH is for its tools.
CDK_RUN := PATH="$(CURDIR)/$(BIN):$$PATH" $(CDK)

.DEFAULT_GOAL := help
.PHONY: help dev test lint types pytest synth checkov bootstrap deploy outputs destroy bench fmt clean native

help:  ## this list
	@echo "usage: make TARGET [ARGS='cdk arguments'] [APPROVAL=never] [DEV_ARGS='voicebot dev arguments'] [MEETING=examples/meeting.yaml]"
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

# pip installs only uv (its pin in pyproject.toml's `infra` extra); uv installs the rest,
# downloading in parallel and reusing its cache (~/.cache/uv): a fresh venv takes seconds of
# download where pip took minutes (bench/README.md). --compile-bytecode does what pip did;
# without it every process would compile the libraries again (PYTHONDONTWRITEBYTECODE).
PINS_OF = $(BIN)/python -c "import sys, tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies'][sys.argv[1]]))"
UV_INSTALL = $(BIN)/uv pip install -q --compile-bytecode

$(BIN)/activate: pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $$($(PINS_OF) infra | tr ' ' '\n' | grep '^uv==')
	$(UV_INSTALL) --python $(BIN)/python --upgrade pip
	$(UV_INSTALL) --python $(BIN)/python -e ".[infra,webhooks,minutes,control_api,relay,cli,dev,native]"
	touch $(BIN)/activate

# checkov in its own environment: its pins clash with the project's (pyproject.toml `checkov`).
$(CHECKOV): pyproject.toml | $(BIN)/activate
	test -d $(VENV)/checkov || $(PY) -m venv $(VENV)/checkov
	$(UV_INSTALL) --python $(VENV)/checkov/bin/python $$($(PINS_OF) checkov)
	touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

dev: $(BIN)/activate  ## the whole stack on this machine: local DynamoDB, webhooks, relay, simulated model
	$(BIN)/voicebot dev $(if $(MEETING),--meeting $(MEETING)) $(DEV_ARGS)

test: lint types pytest synth  ## everything CI runs: lint, types, pytest, offline synth

lint: $(BIN)/activate  ## ruff format check, ruff, import contracts (for the shipped Python too)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	@# Again for the Python the Lambda and the image ship; pyupgrade's rewrites (UP) are left
	@# out there, as they would need syntax that 3.11, the oldest supported, cannot parse.
	$(BIN)/ruff check --target-version py314 --extend-ignore UP --quiet .
	$(BIN)/lint-imports

types: $(BIN)/activate  ## mypy strict, for the oldest supported Python and the shipped one
	$(BIN)/mypy
	$(BIN)/mypy --python-version 3.14

# One pytest worker per core (pytest-xdist); tests/conftest.py keeps a file's tests on one
# worker. `make pytest XDIST=` runs them in this process instead.
XDIST ?= -n auto --dist loadgroup

pytest: $(BIN)/activate node_modules/.installed $(NATIVE)/.built $(CHECKOV)  ## the tests, then the relay's on its mypyc build
	$(BIN)/pytest -m "not bench" $(XDIST)
	@echo "The relay's tests and the browser tests again, on its mypyc build (what the image ships):"
	PYTHONPATH=$(CURDIR)/$(NATIVE) RELAY_EXPECT_COMPILED=1 $(BIN)/pytest -m "not bench" $(XDIST) -q tests/relay tests/e2e

native: $(NATIVE)/.built  ## the relay's per-message modules compiled with mypyc (needs cc and Python.h)

$(NATIVE)/.built: $(BIN)/activate $(RELAY_SOURCES)
	$(BIN)/python relay_container/build_native.py --out $(NATIVE)
	touch $@

synth: $(BIN)/activate node_modules/.installed  ## offline synth (no Docker, no AWS account) + cdk-nag + cfn-lint
	rm -rf cdk.out
	$(CDK_RUN) synth --quiet
	$(BIN)/cfn-lint cdk.out/*.template.json

# checkov runs in `make test` (tests/infra/test_checkov.py); this target is for a look by hand.
checkov: synth $(CHECKOV)  ## checkov on the synthesized templates (every skip has its reason)
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation $$(printf -- '-f %s ' cdk.out/*.template.json)

bootstrap: $(BIN)/activate node_modules/.installed  ## once per account and region: cdk bootstrap
	$(CDK_RUN) bootstrap $(ARGS)

deploy: synth  ## build the relay image (Docker) and deploy the stack; outputs in cdk-outputs.json
	@# Says before the build whether this host can build the arm64 image, and how to fix it.
	$(BIN)/python -m infra.preflight --engine "$${CDK_DOCKER:-docker}" $(ARGS)
	$(CDK_RUN) deploy $(STACK) --require-approval $(APPROVAL) --outputs-file cdk-outputs.json $(ARGS)

outputs: $(BIN)/activate  ## print the deployed stack's outputs again
	$(BIN)/voicebot outputs --stack $(STACK)

destroy: $(BIN)/activate node_modules/.installed  ## delete the stack (the table, log bucket and secrets stay: see docs/aws.md)
	$(CDK_RUN) destroy $(STACK) $(ARGS)

bench: $(BIN)/activate $(NATIVE)/.built  ## benchmarks (not part of make test); figures in bench/README.md
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.relay_hot_path
	PYTHONPATH=$(CURDIR)/$(NATIVE) $(BIN)/python -m bench.relay_hot_path
	$(BIN)/python -m bench.relay_load --target relay native splice
	$(BIN)/python -m bench.meeting_routing

fmt: $(BIN)/activate  ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove build and cache folders
	rm -rf cdk.out .mypy_cache .ruff_cache .pytest_cache $(NATIVE)
