# Quick start: `make demo` (install, provision the default model, the variants matrix on 5 documents)
#              `make test` (install, lint, the test suite, the regression gate). Both use ./.venv.
VENV ?= .venv
PYTHON ?= python3
# torch 2.13.0: the CPU build lies on this machine image (pip's find-links); elsewhere pip takes
# PyPI's build of the same version. Installed first so the project's range does not pull another.
TORCH_SPEC ?= torch==2.13.0
LIMIT ?= 5
# Where `make demo` writes its run; a new folder runs every cell again (the caches stay warm).
DEMO_OUT ?= results/demo
BIN := $(VENV)/bin
STAMP := $(VENV)/.codegen-bench-installed

# The CI regression gate: a small greedy matrix on the default model against results/baseline.json.
GATE_RUN ?= results/ci-gate
# The gate computes with the same ATen kernels on every x86-64 machine (held to AVX2): ATen picks
# AVX2 or AVX-512 kernels by machine, and int8-dynamic, which rounds its activations on every call,
# turns their last-bit differences into other generations. A CPU with AMX-INT8 differs even then and
# has its own baseline (harness/runs/gate.py, INT8_KERNEL_FAMILIES). What each setting changed:
# results/measurements/gate-kernels/README.md.
GATE_ENV := ATEN_CPU_CAPABILITY=avx2
GATE_MATRIX := --variants base int8-dynamic --tasks humaneval_custom humaneval_nll code_explain_humaneval \
	--limit 5 --batch-size 5 --no-latency

.PHONY: install demo humaneval-full test lint format gate gate-baseline clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job, small: every default variant × HumanEval pass@1, likelihood and explanation, on the
# first $(LIMIT) documents of each, plus the latency/memory suite at its demo size (fewer rounds,
# shorter sequences: harness/runs/latency_size.py); reports in $(DEMO_OUT)/.
# lora and qlora use the demo recipe's adapters (a few minutes of training, cached), not the
# default recipe's half hour. Rerunning resumes (finished cells are kept).
DEMO_VARIANTS := base int8-dynamic nf4 l1-pruned wanda-pruned lora=lora,variant.recipe=demo \
	qlora=qlora,variant.recipe=demo
demo: $(STAMP)
	$(BIN)/codegen-bench provision
	$(BIN)/codegen-bench matrix --variants $(DEMO_VARIANTS) --limit $(LIMIT) --batch-size $(LIMIT) \
		--latency-size demo --out $(DEMO_OUT)

humaneval-full: $(STAMP)
	$(BIN)/codegen-bench provision
	$(BIN)/lm_eval --model codegen --tasks humaneval_custom --confirm_run_unsafe_code \
		--batch_size 32 --output_path results/humaneval-full

# A fresh run folder each time: the matrix would otherwise resume from records of older code.
gate: $(STAMP)
	$(BIN)/codegen-bench provision
	rm -rf $(GATE_RUN)
	$(GATE_ENV) $(BIN)/codegen-bench matrix $(GATE_MATRIX) --out $(GATE_RUN)
	$(BIN)/codegen-bench check $(GATE_RUN) --baseline results/baseline.json

# After an intended change of results: rewrite the baseline from a fresh gate run, and commit it.
gate-baseline: $(STAMP)
	$(BIN)/codegen-bench provision
	rm -rf $(GATE_RUN)
	$(GATE_ENV) $(BIN)/codegen-bench matrix $(GATE_MATRIX) --out $(GATE_RUN)
	$(BIN)/codegen-bench check $(GATE_RUN) --baseline results/baseline.json --update

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The unit and integration tests, then the regression gate (what CI runs: .ci/run).
test: lint
	$(BIN)/pytest
	$(MAKE) gate

clean:
	rm -rf $(VENV) $(DEMO_OUT) results/samples $(GATE_RUN)
