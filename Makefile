# Every target creates the virtual environment when it is missing and installs swarmd into it
# (editable), so a fresh clone needs nothing but python3 >= 3.11.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODES ?= 4

.PHONY: devnet test lint types pytest chaos bench clean web release-check status-doc

# The web wallet every node serves at / (node/web): npm ci installs the locked build tools
# (esbuild only), npm run build writes node/web/dist, which swarmd ships as package data.
# Needs Node.js >= 18 and npm.
WEB := node/web
WEB_STAMP := $(WEB)/dist/.built
$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json $(WEB)/build.mjs $(wildcard $(WEB)/src/*)
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	touch $(WEB_STAMP)

web: $(WEB_STAMP)

$(STAMP): pyproject.toml $(WEB_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# A local swarm on loopback with embedded defaults (SQLite, 127.0.0.1).
devnet: $(STAMP)
	$(BIN)/swarmd devnet --nodes $(NODES) --home .devnet

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check protocol storage node benchmarks tests
	$(BIN)/ruff format --check protocol storage node benchmarks tests

# mypy cannot follow setuptools' editable finder, so it checks a symlink tree that mirrors the
# installed package layout (swarmd/protocol -> ../../protocol, ...).
types: $(STAMP)
	rm -rf .build/typecheck && mkdir -p .build/typecheck/swarmd
	ln -s ../../../protocol .build/typecheck/swarmd/protocol
	ln -s ../../../storage .build/typecheck/swarmd/storage
	ln -s ../../../node .build/typecheck/swarmd/node
	cd .build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml \
		-p swarmd.protocol -p swarmd.storage -p swarmd.node

# Both of CI's cores (pytest-xdist): the 100-seed scenario runs dominate and are independent.
pytest: $(STAMP)
	$(BIN)/pytest -q -n 2

# Every simulator scenario over 100 seeds; prints one JSON object and the replay command of any
# failing seed.
chaos: $(STAMP)
	$(BIN)/swarmd chaos --scenario all --seeds 100 --json

# --- release candidates (docs/OPERATIONS.md, "Cutting a release candidate") -------------------
# The release gate: every scenario over SEEDS seeds (two processes), the recovery drills and
# rollback plays on real daemons, the benchmarks' quick rows, the chaos trend and the status
# page; one JSON report in .build/release-check.json, exit 1 on any failure. Longer than
# `make test` (about an hour on 2 idle cores at 1,000 seeds).
SEEDS ?= 1000
release-check: $(STAMP)
	mkdir -p .build
	$(BIN)/swarmd release check --seeds $(SEEDS) --json --out .build/release-check.json

# docs/CURRENT_STATUS.md from the code (never edit it by hand; a test compares it).
status-doc: $(STAMP)
	$(BIN)/swarmd release status

clean:
	rm -rf $(VENV) .build .devnet $(WEB)/dist $(WEB)/node_modules
