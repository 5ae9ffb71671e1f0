# The only commands a newcomer needs: make run, make test, make lint, make bench.
# Each creates the virtual environment in .venv first if it is missing.

# Started as root, the daemons run their children as system users, who must be
# able to run the interpreter: prefer the system's over one in root's home.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install; pip runs again only when pyproject.toml is newer.
STAMP := $(VENV)/.installed

.PHONY: venv run test lint bench crashtest clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

# Both daemons unprivileged on high ports, state under ./var; Ctrl-C stops them.
run: venv
	$(PY) -m common.devrun

# Extra pytest arguments: make test PYTEST_ARGS='-k ipc -x'
test: venv
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	@if [ -f ../shared/tools/check-imports.py ]; then \
		echo "python3 ../shared/tools/check-imports.py ."; \
		python3 ../shared/tools/check-imports.py .; \
	fi

bench: venv
	@if [ -f bench/run.py ]; then \
		echo "$(PY) -m bench.run"; \
		$(PY) -m bench.run; \
	else \
		echo "no benchmarks yet: they come with a later change"; \
	fi

# 2000 messages from 20 clients over 25 and 587 while random mtad and mdad
# processes are killed with kill -9 (6 times), then the counts; options in
# CRASH_ARGS, e.g. make crashtest CRASH_ARGS='--kills 10 --seed 7'. Run as root.
crashtest: venv
	$(PY) -m tests.crash.run --messages 2000 --clients 20 --kills 6 $(CRASH_ARGS)

# Removes development state and caches; keeps .venv.
clean:
	rm -rf var .pytest_cache .ruff_cache .hypothesis build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Install on this server, as root: system users, directories, /opt/mailpair/venv,
# /etc/mailpair and the systemd units. Safe to run again; options go in
# INSTALL_ARGS, e.g. make install INSTALL_ARGS='--prefix /srv/mailpair --no-systemd'.
.PHONY: install
install:
	bash deploy/install.sh $(INSTALL_ARGS)
