# civicloop: every set-up step lives here, so a fresh clone needs only `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VENDOR := src/civicloop/static/vendor
ASSETS := $(VENDOR)/.installed

.PHONY: demo test install lint serve bench bench-replay clean browser smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## front-end libraries from npm (ECharts, htmx, Pico CSS), copied where the package serves and embeds them
$(ASSETS): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/echarts/dist/echarts.min.js node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp node_modules/@picocss/pico/css/pico.min.css $(VENDOR)/
	cp node_modules/echarts/LICENSE $(VENDOR)/echarts.LICENSE
	cp node_modules/htmx.org/LICENSE $(VENDOR)/htmx.LICENSE
	cp node_modules/@picocss/pico/LICENSE.md $(VENDOR)/pico.LICENSE
	touch $(ASSETS)

install: $(STAMP) $(ASSETS)

## demo: the main job on the embedded SQLite default (CIVICLOOP_NO_SERVE=1 to skip serving)
demo: $(STAMP) $(ASSETS)
	$(BIN)/civicloop demo $(if $(CIVICLOOP_NO_SERVE),--no-serve,)

## smoke: the demo without serving on a small slice of the real data (200 rows of each message file), for CI
smoke: $(STAMP) $(ASSETS)
	CIVICLOOP_NO_SERVE=1 CIVICLOOP_MODEL_PATH=out/smoke/classifier.joblib $(BIN)/civicloop demo --no-serve --sample 200 --out out/smoke

## test: the whole suite (SQLite always; PostgreSQL too when CIVICLOOP_TEST_POSTGRES_URL is set)
test: $(STAMP) $(ASSETS) browser
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/pytest -n 2 --dist loadgroup

## browser: Debian's Chromium and CJK fonts for the end-to-end tests (Playwright drives it; never
## `playwright install`). Tolerant: without root or sudo the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null || ((apt-get update -qq && apt-get install -y chromium fonts-noto-cjk) \
		|| (sudo -n apt-get update -qq && sudo -n apt-get install -y chromium fonts-noto-cjk) \
		|| echo "chromium could not be installed: the browser tests will be skipped")

## bench: the benchmarks, results in docs/benchmarks.md (QUICK=1: the quick set, a few minutes)
bench: $(STAMP) $(ASSETS)
	$(BIN)/python benchmarks/run.py $(if $(QUICK),--quick,)

## bench-replay: replay N generated requests (default 1,000,000) through intake on PostgreSQL in PROCESSES
## processes side by side (default 2), BATCH rows a transaction (default 32); hours, not part of `make bench`
## (benchmarks/replay_scale.py)
bench-replay: $(STAMP) $(ASSETS)
	$(BIN)/python benchmarks/replay_scale.py --requests $(or $(N),1000000) --processes $(or $(PROCESSES),2) \
		--batch $(or $(BATCH),32)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

serve: $(STAMP)
	$(BIN)/civicloop init && $(BIN)/civicloop serve

clean:
	rm -rf $(VENV) out civicloop.db civicloop.db-wal civicloop.db-shm node_modules $(VENDOR)
