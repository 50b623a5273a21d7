# Two commands: `make run` starts the app, `make test` runs every test. Both create .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test test-fast lint format bench sample clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps re-run pip only when a requirements file changed.
$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

run: $(VENV)/.run-deps
	$(PY) -m streamlit run app.py --server.port=$(PORT)

# pytest exits 5 when it collected nothing: a test run that tests nothing is a failure here.
test: $(VENV)/.dev-deps
	$(PY) -m ruff check .
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: $(VENV)/.dev-deps
	$(PY) -m pytest -m "not slow and not e2e and not faults"

lint: $(VENV)/.dev-deps
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.dev-deps
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(VENV)/.dev-deps
	$(PY) -m bench ingest

sample: $(VENV)/.run-deps
	$(PY) scripts/make_sample_dataset.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
