# Quick start: `make demo` (install, provision the default model, HumanEval on 10 problems)
#              `make test` (install, lint, run the test suite). Both create/use ./.venv.
VENV ?= .venv
PYTHON ?= python3
# torch 2.13.0: the CPU build lies on this machine image (pip's find-links); elsewhere pip takes
# PyPI's build of the same version. Installed first so the project's range does not pull another.
TORCH_SPEC ?= torch==2.13.0
LIMIT ?= 10
BIN := $(VENV)/bin
STAMP := $(VENV)/.codegen-bench-installed

.PHONY: install demo humaneval-full test lint format clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/codegen-bench provision
	$(BIN)/lm_eval --model codegen --tasks humaneval_custom --confirm_run_unsafe_code \
		--batch_size 16 --limit $(LIMIT) --output_path results/demo

humaneval-full: $(STAMP)
	$(BIN)/codegen-bench provision
	$(BIN)/lm_eval --model codegen --tasks humaneval_custom --confirm_run_unsafe_code \
		--batch_size 32 --output_path results/humaneval-full

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) results/demo results/samples
