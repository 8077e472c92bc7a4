# civicloop: every set-up step lives here, so a fresh clone needs only `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint serve bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: the main job on the embedded SQLite default (CIVICLOOP_NO_SERVE=1 to skip serving)
demo: $(STAMP)
	$(BIN)/civicloop demo $(if $(CIVICLOOP_NO_SERVE),--no-serve,)

## test: the whole suite (SQLite always; PostgreSQL too when CIVICLOOP_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests

serve: $(STAMP)
	$(BIN)/civicloop init && $(BIN)/civicloop serve

clean:
	rm -rf $(VENV) out civicloop.db civicloop.db-wal civicloop.db-shm
