# xor-lightning: `make train` and `make test` set everything up on first use.
SHELL := /bin/bash
PYTHON ?= python3
# `VENV=` (empty) uses the environment $(PYTHON) belongs to instead of .venv: for a machine
# whose image already has torch (install the project there with `pip install --no-deps -e .`).
VENV ?= .venv
ifeq ($(VENV),)
BIN := $(patsubst %/,%,$(dir $(shell command -v $(PYTHON))))
STAMP :=
else
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
endif
ARGS ?=
accelerator ?=
ckpt ?=
format ?= onnx
SEEDS ?= 1000
RES ?= 64

.DEFAULT_GOAL := help
.PHONY: help install train sweep seeds map eval predict export test test-fast lint format bench tensorboard screenshots intro gotchas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='<hydra overrides>'  accelerator=cpu|gpu|auto  ckpt=<file.ckpt>  SEEDS=<n>  RES=<n>  VENV= (use the current env)"

# The Hydra plugins, each a package of its own (plugins/<name>/pyproject.toml).
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

# The template and every plugin, editable. Reinstalls only when a pyproject.toml or
# constraints.txt changes.
$(VENV)/.installed: pyproject.toml constraints.txt $(addsuffix /pyproject.toml,$(PLUGINS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e '.[dev]' $(foreach p,$(PLUGINS),-e $(p))
	touch $@

install: $(STAMP) ## create .venv and install the project, its dev tools and its plugins

train: $(STAMP) ## train (ARGS='model.hidden=4', ARGS='-m model.hidden=4,8', accelerator=gpu)
	$(BIN)/xor-train $(ARGS) $(if $(accelerator),trainer.accelerator=$(accelerator))

sweep: $(STAMP) ## an example grid: hidden x lr, 6 jobs, with a summary table at the end
	$(BIN)/xor-train -m model.hidden=4,8 model.optimizer.lr=0.01,0.05,0.1 $(ARGS)

seeds: $(STAMP) ## how often the chapter's net learns XOR: SEEDS seeds x widths 1,2,3,4,8, vectorised
	$(BIN)/python -m xor_lightning.sweeps.seeds --seeds $(SEEDS) $(ARGS) $(if $(accelerator),trainer.accelerator=$(accelerator))

map: $(STAMP) ## trainability map: RES x RES hidden/output learning rates, one vectorised sweep, map.png
	$(BIN)/python -m xor_lightning.sweeps.trainmap --res $(RES) $(ARGS) $(if $(accelerator),trainer.accelerator=$(accelerator))

eval: $(STAMP) ## score a checkpoint: make eval ckpt=<file> [ARGS='data.n_test=10000']
	$(BIN)/xor-eval ckpt_path=$(ckpt) $(ARGS)

predict: $(STAMP) ## classify points: make predict ckpt=<file> ARGS="'points=[[0.6,-0.7]]'" or ARGS=input=<csv>
	$(BIN)/xor-predict ckpt_path=$(ckpt) $(ARGS)

export: $(STAMP) ## export a checkpoint: make export ckpt=<file> format=onnx|pt2
	$(BIN)/xor-export ckpt_path=$(ckpt) format=$(format) $(ARGS)

# The tests run on every core (pytest-xdist, -n auto), one thread a worker and in the
# processes it starts (OMP_NUM_THREADS=1): the workers already fill the cores.
test: lint ## lint, then run every test, on every core (pytest -n auto)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto $(ARGS)

test-fast: lint ## lint, then the quick tests (pytest -m "not slow"): the core, in about a minute
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff: lint and check formatting
	$(BIN)/ruff check src tests bench docs plugins
	$(BIN)/ruff format --check src tests bench docs plugins

format: $(STAMP) ## ruff: fix what can be fixed and format
	$(BIN)/ruff check --fix src tests bench docs plugins
	$(BIN)/ruff format src tests bench docs plugins

bench: $(STAMP) ## benchmark against the plain PyTorch script (also on the GPU when there is one)
	$(BIN)/python bench/bench.py $(ARGS)
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		$(BIN)/python bench/bench.py --accelerator gpu $(ARGS); fi

tensorboard: $(STAMP) ## serve outputs/ on http://127.0.0.1:6006
	$(BIN)/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

screenshots: $(STAMP) ## TensorBoard for a run and a sweep, headless Chromium PNGs in outputs/screenshots/ (ARGS=--docs: also docs/)
	$(BIN)/python docs/screenshots.py $(ARGS)

intro: $(STAMP) ## run the chapter's script: the four pillars and the plain PyTorch loop
	$(BIN)/python -m xor_lightning.intro

gotchas: $(STAMP) ## run the chapter's gotchas: zero_grad, eval/no_grad, logits, float64
	$(BIN)/python -m xor_lightning.intro gotchas

clean: ## remove outputs (keeps .venv)
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
