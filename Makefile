# dlexp: `make train` runs the default experiment, `make test` the fast test suite.
# Both create the virtual environment first when it is missing or out of date. The install
# is editable and pinned to the tested versions of constraints.txt (pyproject.toml: ranges).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dlexp-installed
ARGS   ?=
TEST_WORKERS ?= 2

.PHONY: install train test test-all lint format tensorboard bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt dlexp/__init__.py  # __init__.py: the version
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev,sweeps,mlflow,wandb]'
	touch $(STAMP)

train: install
	$(BIN)/dlexp train $(ARGS)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(ARGS)

test-all: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(ARGS)

lint: install
	$(BIN)/ruff check dlexp hydra_plugins tests bench
	$(BIN)/ruff format --check dlexp hydra_plugins tests bench

format: install
	$(BIN)/ruff format dlexp hydra_plugins tests bench
	$(BIN)/ruff check --fix dlexp hydra_plugins tests bench

tensorboard: install
	$(BIN)/tensorboard --logdir outputs --port 6006

bench: install
	$(BIN)/python bench/default_run.py

clean:
	rm -rf outputs .pytest_cache .ruff_cache lightning_logs multirun
	find . \( -path ./.git -o -path ./.venv -o -path './$(VENV:./%=%)' \) -prune \
		-o -name __pycache__ -type d -prune -exec rm -rf {} +
