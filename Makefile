# The README's commands live here. Everything runs from the project's own .venv,
# installed from requirements.lock: a fresh machine needs only python3 and make.
#
#   make run         install, initialise SQLite in instance/, seed the demo, start the
#                    provider (127.0.0.1:5000) and the demo relying party (127.0.0.1:5001)
#   make test        install and run the whole test suite
#   make bench       the load benchmark (bench/README.md)
#   make lint        ruff
#   make migration   regenerate the single Alembic revision from the models, then check it
#   make lock        re-resolve requirements.lock (scripts/update_lock.sh)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTANCE ?= instance
RP_CONFIG ?= $(INSTANCE)/demo-rp.json
IDP_HOST ?= 127.0.0.1
IDP_PORT ?= 5000
RP_PORT ?= 5001
# The demo's database and issuer (only for the demo targets, never for the tests);
# a value already in the environment wins.
seed run serve: export IDP_DATABASE_URL ?= sqlite:///$(abspath $(INSTANCE))/idp.sqlite
seed run serve: export IDP_ISSUER ?= http://$(IDP_HOST):$(IDP_PORT)
# Plain-text logs in a terminal (production keeps the JSON lines of config/default.toml).
run serve: export IDP_SERVER__JSON_LOGS ?= false
# pytest arguments: parallel on every core by default (PYTEST_ARGS="-x -k cli" to narrow).
PYTEST_ARGS ?= -n auto
RUFF_VERSION ?= 0.17.6
# pyflakes, pycodestyle's errors and bugbear; widen once the code base is clean.
RUFF_ARGS ?= --select E4,E7,E9,F,B --line-length 120

.PHONY: install run serve seed test bench lint migration lock clean

install: $(VENV)/.installed

# Reinstalled when the dependencies or their pins change.
$(VENV)/.installed: pyproject.toml setup.py requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	@touch $@

$(INSTANCE):
	@mkdir -p $(INSTANCE)

seed: install | $(INSTANCE)
	@echo "database: $$IDP_DATABASE_URL"
	@$(BIN)/idp init
	@$(BIN)/idp demo seed --rp-url http://127.0.0.1:$(RP_PORT) --rp-config $(RP_CONFIG)

# Both servers in one process group: Ctrl-C (or either one exiting) stops both.
run: seed
	@echo "Provider: http://$(IDP_HOST):$(IDP_PORT)   Demo relying party: http://127.0.0.1:$(RP_PORT)   (Ctrl-C stops both)"
	@bash -c 'trap "trap - EXIT INT TERM; kill \$$(jobs -p) 2>/dev/null; wait" EXIT INT TERM; \
	  $(BIN)/idp serve --host $(IDP_HOST) --port $(IDP_PORT) & \
	  RP_CONFIG=$(RP_CONFIG) RP_PORT=$(RP_PORT) $(BIN)/python examples/rp/app.py & \
	  wait -n'

serve: install
	$(BIN)/idp serve --host $(IDP_HOST) --port $(IDP_PORT)

# pytest exits 5 when it collects no test: not a failure of `make test`.
# The project's bytecode is written first: where PYTHONDONTWRITEBYTECODE is set (as on CI machines),
# every `idp` subprocess of the suite would otherwise compile the project's modules again (0.08 s each).
test: install
	@$(BIN)/python -m compileall -q -j 0 idp plugins authenticator examples >/dev/null
	@rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: no tests collected"; rc=0; fi; exit $$rc

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install
	@$(BIN)/ruff --version 2>/dev/null | grep -q "$(RUFF_VERSION)" || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check ruff==$(RUFF_VERSION)
	$(BIN)/ruff check $(RUFF_ARGS) idp plugins authenticator examples tests bench

# The history is one revision (0001_initial) until the first release: run this after
# changing a model and commit idp/migrations/versions/0001_initial.py with the change.
migration: install
	$(BIN)/python -m idp.schema regenerate
	$(BIN)/python -m idp.schema verify

lock:
	scripts/update_lock.sh

clean:
	rm -rf $(VENV) build dist *.egg-info test-artifacts
