# The course's commands (`make help` lists them). Each target creates .venv and installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
.DEFAULT_GOAL := help

.PHONY: help book test lint release grade bench fork portable seeds student-repo clean clean-grades clean-venv

# PYTHON= chooses the Python that creates .venv. Once .venv exists it is reused, so a different
# PYTHON= would be ignored without a word: stop and say so instead (clean and help still run).
ifneq ($(filter command line environment,$(origin PYTHON)),)
ifneq ($(wildcard $(PY)),)
ifeq ($(filter help clean clean-grades clean-venv,$(MAKECMDGOALS)),)
VENV_VERSION  := $(shell $(PY) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
ASKED_VERSION := $(shell $(PYTHON) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
ifneq ($(VENV_VERSION),$(ASKED_VERSION))
$(error .venv was made with Python $(VENV_VERSION), not PYTHON=$(PYTHON) ($(or $(ASKED_VERSION),not found)): run `make clean-venv`, then this command again)
endif
endif
endif
endif

# The virtual environment. requirements.txt names PyTorch's CPU index; coursetools.pipinstall
# leaves it out if it does not answer (pip would retry it for every package) and says so.
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: the course needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
	       "Choose one with: make $(or $(MAKECMDGOALS),book) PYTHON=python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: $(PYTHON) -m venv failed. On Debian or Ubuntu: sudo apt-get install python3.11-venv" \
	       "(the venv module with ensurepip for your Python version)"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m coursetools.pipinstall --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

## make help: list the commands
help:
	@sed -n -e 's/^## make /  make /p' -e 's/^## /      /p' $(MAKEFILE_LIST)

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

## make lint: ruff check .
lint: $(STAMP)
	$(BIN)/ruff check .

## make release [CHAPTER=01_vanishing]: student release(s) under dist/release/ (plain markdown, pinned gradflow)
release: $(STAMP)
	$(PY) -m coursetools.assign release $(CHAPTER) --transform coursetools.studentrepo:for_students

## make grade CHAPTER=01_vanishing SUBMISSIONS=folder [JOBS=n] [ROSTER=file] [UNSAFE_NO_SANDBOX=1]: each notebook
## in a bubblewrap sandbox, JOBS at a time (default: the cores); grades.csv and feedback under dist/grading/
grade: $(STAMP)
	$(PY) -m coursetools.assign grade $(CHAPTER) $(SUBMISSIONS) $(if $(JOBS),--jobs $(JOBS)) \
	  $(if $(ROSTER),--roster $(ROSTER)) $(if $(filter 1 yes true,$(UNSAFE_NO_SANDBOX)),--unsafe-no-sandbox)

## make bench: notebook times and memory, build time, page weight, grading throughput, against budgets
bench: $(STAMP)
	$(PY) -m coursetools.bench

## make fork REPO=https://github.com/you/repo [REF=branch-or-tag]: point the launch buttons and Colab installs at a fork
fork: $(STAMP)
	$(PY) -m coursetools.repo $(REPO) $(if $(REF),--ref $(REF))

# Regenerable outputs under dist/. Instructor grading state (dist/grading/: gradebook, adjustments,
# results; and the gradebook, grades and feedback of older releases) is never in this list.
REGENERABLE := dist/release dist/logs dist/student-repo dist/source_with_tests dist/solution

## make student-repo [CHAPTER=01_vanishing] [OUT=dist/student-repo] [URL=https://github.com/you/course-release REF=main]:
## the student release as a self-contained repository for Binder, a JupyterHub or an LMS (book/instructors.md)
student-repo: $(STAMP)
	$(PY) -m coursetools.studentrepo $(or $(OUT),dist/student-repo) $(if $(CHAPTER),--chapter $(CHAPTER)) \
	  $(if $(URL),--url $(URL)) $(if $(REF),--ref $(REF))

## make clean: remove the built site and what `make release` regenerates (never grades: see clean-grades)
clean:
	rm -rf _build $(REGENERABLE)

## make clean-grades CONFIRM=yes: delete all grading state under dist/, its secret too (cannot be undone)
clean-grades:
	@if [ "$(CONFIRM)" != yes ]; then \
	  echo "make clean-grades deletes all grading state under dist/ (results, adjustments, grades,"; \
	  echo "feedback, the grading secret, nbgrader's database)."; \
	  echo "Nothing deleted. To delete it: make clean-grades CONFIRM=yes"; exit 2; fi
	rm -rf dist/grading dist/nbgrader.db dist/gradebook.db dist/grades.csv dist/grades dist/submitted \
	  dist/autograded dist/feedback

## make clean-venv: remove .venv (the next command makes it again, with PYTHON=... if given)
clean-venv:
	rm -rf $(VENV)
