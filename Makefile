# The README's commands. A fresh machine needs Python 3.10+ and nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint docs screenshots bench bench-lr bench-tricks bench-glyphs

demo: install  ## install, then train the Digit Recognizer recipe on the bundled sample
	$(BIN)/kit run mnist --sample

test: install  ## install, then run the test suite
	$(BIN)/python -m pytest -q

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade -q pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

docs: install  ## the documentation site, built strictly (no broken link) into build/site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

screenshots: install  ## the docs' pictures, from a real `kit run mnist --sample` (needs chromium)
	$(BIN)/python docs/screenshots.py

lint: install
	$(BIN)/ruff check kit competitions tests benchmarks
	$(BIN)/ruff format --check kit competitions tests benchmarks

bench: install  ## the speed and accuracy tables in the README
	$(BIN)/python benchmarks/mnist.py
	$(BIN)/python benchmarks/invasive.py
	$(BIN)/python benchmarks/ensemble.py
	$(BIN)/python benchmarks/layouts.py
	$(BIN)/python benchmarks/predict.py

bench-lr: install  ## the learning-rate rules across data sets and seeds (about 3 hours)
	$(BIN)/python -m benchmarks.lr

bench-tricks: install  ## label smoothing, MixUp, CutMix, EMA, epochs, width against the defaults (about 40 minutes)
	$(BIN)/python -m benchmarks.tricks

bench-glyphs: install  ## the schedule's length against the data's size on 62 printed characters (about an hour)
	$(BIN)/python -m benchmarks.glyphs
