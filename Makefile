# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install system-deps test-deps bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP) system-deps

# Chinese labels in charts need a CJK font. As root (CI, containers) we install Debian's
# fonts-wqy-microhei; otherwise we say what to install and carry on (charts still render, with boxes).
system-deps:
	@if [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || fc-list 2>/dev/null | grep -qiE 'wenquanyi|noto sans cjk'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1)) || \
	  echo "warning: could not install fonts-wqy-microhei; chart labels will not render"; \
	else echo "note: install a CJK font (e.g. sudo apt-get install fonts-wqy-microhei) for Chinese chart labels"; fi

run: install
	$(BIN)/arbot --config config.demo.toml serve

# the dashboard's browser test drives Debian's Chromium (never a browser download)
test-deps:
	@if [ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) || \
	  echo "warning: could not install chromium; the browser test will be skipped (loudly)"; \
	else echo "note: install Debian's chromium package to run the browser test"; fi

# one test worker per core, at most 4 (each file runs whole in one worker: its module fixtures are built once)
WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

# lint-imports first: the import rules of pyproject.toml [tool.importlinter] (layers point down, no loops)
test: install test-deps
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

# the long fault trials (60 SIGKILL trials with real processes, more fuzzing)
soak: install
	ARBOT_SOAK=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_faults.py tests/test_multi_instance.py

clean:
	rm -rf $(VENV) arbot-demo.db arbot-demo.db-*
