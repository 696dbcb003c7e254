# `make test` and `make demo` work from nothing: they create the virtual
# environment, install the package with its test extras, and install the
# system packages retrograde needs (gcc to build test programs, gdb to debug;
# each package is named for the command it installs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := gcc gdb make sqlite3 strace
# The suite drives lldb as a client too; nothing else needs it.
TEST_PACKAGES := lldb-16

.PHONY: test demo bench lint typecheck system-deps clean

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "retrograde needs these system packages:$$missing (apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

test: $(STAMP)
	@$(MAKE) --no-print-directory system-deps SYSTEM_PACKAGES="$(SYSTEM_PACKAGES) $(TEST_PACKAGES)"
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) bench/run.py

lint: typecheck $(STAMP)
	$(VENV)/bin/ruff check retrograde tracee trace replay gdbstub

# mypy cannot follow setuptools' package-dir mapping, so check a symlink tree that
# has the installed layout (retrograde/{tracee,trace,replay,gdbstub}).
typecheck: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	mkdir -p "$$tmp/retrograde" && \
	for f in $(CURDIR)/retrograde/*.py; do ln -s "$$f" "$$tmp/retrograde/"; done && \
	for d in tracee trace replay gdbstub; do ln -s "$(CURDIR)/$$d" "$$tmp/retrograde/$$d"; done && \
	cd "$$tmp" && $(abspath $(PY)) -m mypy -p retrograde --ignore-missing-imports

clean:
	rm -rf $(VENV) build *.egg-info tests/programs/build
