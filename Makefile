# Thin wrappers around the CLI and pytest. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODEL  ?= models/digits_cnn_qop.onnx
DEMO   := build/demo

.PHONY: install demo test test-slow lint clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# generate -> simulate -> verify on the bundled default model.
demo: $(STAMP)
	$(VENV)/bin/codesign generate $(MODEL) -o $(DEMO)
	$(VENV)/bin/codesign simulate $(DEMO) --input models/digits_cnn_sample.npy --output $(DEMO)/y.npy
	$(VENV)/bin/codesign verify $(MODEL) -o $(DEMO) --input models/digits_cnn_sample.npy

test: $(STAMP)
	PYTHONWARNINGS=error $(PY) -m pytest -q --durations=30

test-slow: $(STAMP)
	PYTHONWARNINGS=error $(PY) -m pytest -q -m slow

clean:
	rm -rf build .pytest_cache
