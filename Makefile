# Development tasks for dugong.
#
# Every target prepares what it needs by itself: a virtualenv in $(VENV),
# made with `python3 -m venv`, into which pip installs the package (editable)
# and, for the developer targets, the tools named in requirements-dev.txt.
# Stamp files inside the virtualenv record each install; it is redone only
# when pyproject.toml, setup.py or requirements-dev.txt is newer than its stamp.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
PY          := $(BIN)/python
PIP         := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

PKG_STAMP   := $(VENV)/.stamp-package
DEV_STAMP   := $(VENV)/.stamp-dev

.PHONY: test test-pythons demo lint doc bench bench-quick clean

# ------------------------------------------------------------------ set-up

$(PY):
	$(PYTHON) -m venv $(VENV)

$(PKG_STAMP): pyproject.toml setup.py | $(PY)
	$(PIP) install -e .
	touch $@

$(DEV_STAMP): requirements-dev.txt | $(PY)
	$(PIP) install -r requirements-dev.txt
	touch $@

# ------------------------------------------------------------------ targets

# Run the test-suite under coverage, on every core (pytest-xdist; one test file
# stays on one worker, so that a file's servers start once); fails below the
# fail_under gate of pyproject.toml.  test_cli.py runs `python -m dugong` under
# coverage too: pytest-cov adds those data files to the report.
# Extra pytest arguments: make test PYTEST_ARGS="-k chunked"; one process:
# make test PYTEST_ARGS="-n 0"
test: $(DEV_STAMP) $(PKG_STAMP)
	rm -f .coverage .coverage.*
	$(PY) -m pytest -n auto --dist loadfile --cov --cov-report=term $(PYTEST_ARGS)

# The core tests under every other CPython >= 3.11 on this machine (each in its
# own .venv-pyX.Y); the main Python is covered by `make test`.
test-pythons:
	bash .ci/other-pythons

# A demonstration against a local server that dugong's demo starts itself.
demo: $(PKG_STAMP)
	$(PY) -m dugong

lint: $(DEV_STAMP) $(PKG_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

doc: $(DEV_STAMP) $(PKG_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html doc doc/html

# The benchmark's own virtualenv: the clients it compares, each requirement
# installed on its own, and dugong 3.8.2 for the reference rows, installed apart
# (it has our import name); nginx if missing. A requirement marked optional that
# fails leaves pip's message in $(BENCH_VENV)/failed/NAME, which the report quotes
# (delete the stamp to try again); any other failure stops make.
BENCH_VENV  := .venv-bench
BENCH_PIP   := $(BENCH_VENV)/bin/python -m pip --disable-pip-version-check -q
BENCH_STAMP := $(BENCH_VENV)/.stamp-bench
NGINX_APT   := apt-get install -y --no-install-recommends nginx-light

$(BENCH_STAMP): contrib/bench-requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	rm -rf $(BENCH_VENV)/failed && mkdir $(BENCH_VENV)/failed
	grep '^[^#]' contrib/bench-requirements.txt | while read -r req note; do \
	  log=$(BENCH_VENV)/failed/$${req%%=*}; \
	  if $(BENCH_PIP) install $$req 2>$$log; then rm $$log; \
	  elif [ "$${note#\# optional}" != "$$note" ]; then echo "$$req failed: its rows are unavailable"; \
	  else cat $$log; exit 1; fi; \
	done
	rm -rf $(BENCH_VENV)/dugong-3.8.2
	$(BENCH_PIP) install --no-deps --target $(BENCH_VENV)/dugong-3.8.2 dugong==3.8.2
	command -v nginx || test -x /usr/sbin/nginx || $(NGINX_APT) || (apt-get update && $(NGINX_APT))
	touch $@

bench: $(PKG_STAMP) $(BENCH_STAMP)
	$(PY) contrib/bench.py

bench-quick: $(PKG_STAMP) $(BENCH_STAMP)
	$(PY) contrib/bench.py --quick

clean:
	rm -rf .venv .venv-* build dist *.egg-info doc/html htmlcov
	rm -rf .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
