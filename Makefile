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

# --init he is the default (docs/TRAINING.md, "Pixels and initialization"); it is spelled
# out so that the command reads as the README shows it. --overwrite: run it again at will.
TRAIN_ARGS ?= --dataset fashion-mnist-subset --model mini --init he --epochs 4 --out runs/quickstart --overwrite

train: $(VENV)/.installed
	$(PY) train.py $(TRAIN_ARGS) $(ARGS)

gradcheck: $(VENV)/.installed
	$(PY) gradcheck.py

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
