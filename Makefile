# The two commands a new user runs (see README.md):
#   make train   -> installs into .venv and trains AlexNet on the bundled Fashion-MNIST subset
#   make test    -> installs into .venv (with the test extras) and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip

.PHONY: train test gradcheck install install-dev clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

train: $(VENV)/.installed
	$(PY) train.py $(ARGS)

gradcheck: $(VENV)/.installed
	$(PY) -m engine.gradcheck

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
