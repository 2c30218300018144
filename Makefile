# dragkit developer entry points. `make serve` and `make test` each do all
# set-up on a fresh machine (virtualenv, pinned CPU torch, browser for tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 7860
MODEL  ?=

.PHONY: setup browser-deps serve test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,faces]"
	touch $@

# Debian's Chromium drives the browser tests (Playwright's own download
# cannot work offline).  Installed only when missing.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing chromium (Debian) for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

serve: setup
	$(BIN)/dragkit serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL),)

test: setup browser-deps
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not browser"

bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
