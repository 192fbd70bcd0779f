# The course's commands. Each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: book test lint release grade bench fork portable seeds clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

## make book: execute every chapter and build the site (warnings are errors)
book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Site built: $(CURDIR)/_build/html/index.html"

## make test: ruff, then build the site, then the whole test suite, then every notebook again
## on MKL's and ATen's most basic code paths (MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default)
test: $(STAMP)
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory book
	$(BIN)/pytest --nbval tests book
	$(PY) -m coursetools.matrix cheap

MATRIX_ARGS = $(if $(ONLY),--only $(ONLY)) $(if $(JOBS),--jobs $(JOBS)) $(NOTEBOOKS)

## make portable [NOTEBOOKS="book/02_residual/*.ipynb"] [ONLY=avx2,one-thread] [JOBS=2]: every notebook
## under nbval natively, with MKL_CBWR=COMPATIBLE|AVX2|AVX512, ATEN_CPU_CAPABILITY=default, OMP_NUM_THREADS=1
portable: $(STAMP)
	$(PY) -m coursetools.matrix portable $(MATRIX_ARGS)

## make seeds [NOTEBOOKS=...] [ONLY=seed-3] [JOBS=2]: every notebook under nbval with GRADFLOW_SEED=0..4
seeds: $(STAMP)
	$(PY) -m coursetools.matrix seeds $(MATRIX_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## make release [CHAPTER=01_vanishing]: student release(s) under dist/release/
release: $(STAMP)
	$(PY) -m coursetools.assign release $(CHAPTER)

## make grade CHAPTER=01_vanishing SUBMISSIONS=folder: grades.csv and feedback under dist/
grade: $(STAMP)
	$(PY) -m coursetools.assign grade $(CHAPTER) $(SUBMISSIONS)

## make bench: notebook times and memory, build time, page weight, against budgets
bench: $(STAMP)
	$(PY) -m coursetools.bench

## make fork REPO=https://github.com/you/repo [REF=branch-or-tag]: point the launch buttons and Colab installs at a fork
fork: $(STAMP)
	$(PY) -m coursetools.repo $(REPO) $(if $(REF),--ref $(REF))

clean:
	rm -rf _build dist
