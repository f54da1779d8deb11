# estiba: the README's two commands are `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: setup run test check lint bench debian-image

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTEST) -p no:cacheprovider

# The fast loop: lint and the quick tests.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PYTEST) -p no:cacheprovider -m "not slow and not browser" -x -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The demo image debian:bookworm from Debian's packages, pushed to the local registry
# that `make run` serves (DEBIAN_PUSH= to skip the push).
DEBIAN_PUSH ?= 127.0.0.1:5000/library/debian:bookworm
debian-image: setup
	$(PY) -m engine.images.debian $(if $(DEBIAN_PUSH),--push $(DEBIAN_PUSH))

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
