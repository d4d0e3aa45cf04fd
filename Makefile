# The two set-up commands of the README: `make serve` and `make test`.
# Each creates .venv from pyproject.toml (pinned) on first use; nothing is installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint install clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/gatewayz serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check shared functions tests bench
	$(BIN)/mypy
	# template.yaml after the SAM transform: cfn-lint is what `sam validate --lint` runs, without
	# the SAM CLI (and its Docker client) on the machine.
	$(BIN)/cfn-lint template.yaml

test: $(STAMP) lint
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .gatewayz
