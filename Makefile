# One command sets a fresh machine up and runs the suite: `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 11112
OUT    ?= received
# `make run` listens on loopback only; BIND=0.0.0.0 (or BIND= , empty) listens on every interface.
BIND   ?= 127.0.0.1

# Debian packages the interop tests talk to, keyed by the command they provide.
PEERS  := storescp:dcmtk openssl:openssl Orthanc:orthanc haproxy:haproxy prometheus:prometheus ip:iproute2 valgrind:valgrind

.PHONY: test venv peers lint bench bench-instructions run clean fuzz soak

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

peers:
	@missing=""; for pair in $(PEERS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "The tests need these Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

test: venv peers
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests bench --benchmark-disable

lint: venv
	$(VENV)/bin/ruff check .

bench: venv bench-instructions
	$(PY) -m pytest bench -q --benchmark-only --benchmark-columns=min,median,mean,ops,rounds

# Instructions per stored instance on the store path (valgrind): a cost guard that noise cannot blur.
bench-instructions: venv
	$(PY) -m bench.instructions --datasets tiny,ct

# The server needs only the runtime dependencies, not the test extra: its own marker.
$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

run: $(VENV)/.installed-run
	$(PY) -m hsscp storescp $(if $(BIND),--bind $(BIND)) -od $(OUT) $(PORT)

# Coverage-guided fuzzing (atheris) of the PDU reader+engine, the DIMSE decoder and the
# data set peek, FUZZ_SECONDS (default 60) each; prints how many inputs each one ran.
fuzz: venv
	$(PY) -m pip install -q atheris
	$(PY) tests/fuzz/run.py --seconds $(or $(FUZZ_SECONDS),60)

# Minutes of mixed load on the multiprocess SCP while its processes are killed;
# SOAK_SECONDS (default 600). Exits non-zero if an acknowledged instance was lost.
soak: venv peers
	$(PY) -m bench.soak --duration $(or $(SOAK_SECONDS),600)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
