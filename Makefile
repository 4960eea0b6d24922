# pm-order: `make run` serves the demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

export PM_ORDER_TOKENS_FILE ?= examples/tokens.json
export PM_ORDER_DATABASE_URL ?= sqlite:///var/pm-order.sqlite3
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test test-sqlite lint bench clean catalogs docs

# The users' languages (PM_ORDER_LANGUAGE): one gettext catalog each. The .po is
# what translators edit and what git keeps; install compiles each to its .mo.
LOCALE := language/locale
CATALOGS := $(wildcard $(LOCALE)/*/LC_MESSAGES/pm_order.po)

install: $(INSTALLED) $(CATALOGS:.po=.mo)

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

%.mo: %.po $(INSTALLED)
	$(BIN)/pybabel -q compile --input-file $< --output-file $@

# After changing a message in the code: the template, then every catalog, with
# new messages to translate (`make test` fails until each has its translation).
catalogs: install
	$(BIN)/pybabel -q extract --no-location --sort-output --project pm-order --version 0.1.0 --copyright-holder "the pm-order authors" \
		--output-file $(LOCALE)/pm_order.pot domain projections service mail api cli language
	$(BIN)/pybabel -q update --no-fuzzy-matching --ignore-obsolete --domain pm_order \
		--input-file $(LOCALE)/pm_order.pot --output-dir $(LOCALE)

# A person reads `make run`'s log: --log-format text.
# The demo store persists in var/: the import registers only servers it does not
# know yet, so that `make run` works again after orders moved some
# (`rm -rf var` starts over from the demo inventory).
run: install
	$(BIN)/pm-order machines import --new-only examples/inventory.csv --log-format text
	@echo
	@echo "Serving on http://$(HOST):$(PORT). Try, in another terminal:"
	@echo
	@echo "  curl -s -H 'X-Auth-Token: tok-alice' -H 'Sp-Agent: scloudm' \\"
	@echo "       'http://$(HOST):$(PORT)/mana_api/pm_order/proj-a?type=4'"
	@echo
	@echo "(the README walks through ordering, accepting and refusing)"
	@echo
	$(BIN)/pm-order serve --host $(HOST) --port $(PORT) --log-format text

# pytest exits 5 when it ran no test: make fails then, as on any failure.
test: install
	$(BIN)/pytest

# The documentation site, docs/ built into site/ (open site/index.html); the
# configuration page is first written from the settings table (service/settings.py).
docs: install
	$(BIN)/python -m service.settings_reference > docs/configuration.md
	$(BIN)/mkdocs build --strict

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# ONLY=peers,create,list,lag,projector,growth picks some; SIZE=small for a quick look
# (SIZE=tiny: every benchmark in seconds, as tests/bench does in `make test`).
# Full size grows one store to 1,000,000 orders (growth), and list measures on it.
bench: install
	$(BIN)/python bench/run.py $(if $(ONLY),--only $(ONLY)) $(if $(SIZE),--size $(SIZE))

# Not part of `make test`: 10 minutes (SOAK_MINUTES) of mixed traffic against one
# server; SOAK_FLAGS=--postgres for PostgreSQL.
.PHONY: soak
soak: install
	$(BIN)/python bench/soak.py $(SOAK_FLAGS)

clean:
	rm -rf $(VENV) var site *.egg-info .pytest_cache .mypy_cache .ruff_cache $(CATALOGS:.po=.mo)
