# The two commands a new user runs (see README.md):
#   make train   -> installs into .venv and trains AlexNet (mini preset) on the bundled
#                   Fashion-MNIST subset, on the CPU, in a few minutes
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

# He init: the paper's N(0, 0.01) init leaves the small presets near chance for many
# epochs (README, "Initialization"); everything else is the paper's recipe.
TRAIN_ARGS ?= --dataset fashion-mnist-subset --model mini --init he --epochs 4 --out runs/quickstart

train: $(VENV)/.installed
	$(PY) train.py $(TRAIN_ARGS) $(ARGS)

gradcheck: $(VENV)/.installed
	$(PY) gradcheck.py

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
