# rollcall: `make run` serves with its own Redis and PostgreSQL; `make test` runs the whole suite.
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := tests/integration/node/node_modules/.installed
# The official Socket.IO protocol test-suite, vendored unchanged in the shared folder; `make test`
# runs a copy under .run (git-ignored) with its own npm dependencies (tests/integration/protocol/official_suite.py).
PROTOCOL_SUITE := ../shared/vendor/socket.io-protocol/test-suite
PROTOCOL_SUITE_FILES := package.json test-suite.js node-imports.js
PROTOCOL_SUITE_COPY := .run/socket.io-protocol
PROTOCOL_SUITE_INSTALLED := $(PROTOCOL_SUITE_COPY)/node_modules/.installed

# The demo's token secret, used by `make run` and `make demo` unless ACCESS_TOKEN_SECRET is set.
export ACCESS_TOKEN_SECRET ?= demo-secret-for-make-run-never-for-production

.PHONY: run test test-latest lint demo bench screenshots clean

run: $(INSTALLED)
	@scripts/run.sh $(ARGS)

test: $(INSTALLED) $(NODE_INSTALLED) $(PROTOCOL_SUITE_INSTALLED)
	@scripts/test.sh $(ARGS)

# The whole suite on the newest release of every dependency, in a fresh virtualenv under .run
# (`make test` stays on the exact releases of constraints.txt).
LATEST_VENV := .run/latest-venv
test-latest: $(NODE_INSTALLED) $(PROTOCOL_SUITE_INSTALLED)
	@scripts/bootstrap.sh run
	rm -rf $(LATEST_VENV)
	python3 -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade -e '.[test]'
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade $$($(LATEST_VENV)/bin/python scripts/requirements.py)
	$(LATEST_VENV)/bin/python -m pip list
	@ROLLCALL_VENV=$(LATEST_VENV) scripts/test.sh $(ARGS)

demo: $(INSTALLED)
	@$(PY) scripts/demo.py $(ARGS)

bench: $(INSTALLED)
	$(PY) bench/protocol_bench.py
	$(PY) bench/join_bench.py

# The lesson page as docs/operations.md shows it, at a phone's and a desktop's width.
screenshots: $(INSTALLED) $(NODE_INSTALLED)
	@ROLLCALL_SCREENSHOT_DIR=$(CURDIR)/docs/images scripts/test.sh \
		tests/integration/operations/test_lesson_page.py -k screenshots -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

$(INSTALLED): setup.cfg pyproject.toml constraints.txt scripts/bootstrap.sh
	@scripts/bootstrap.sh run
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -c constraints.txt
	@touch $@

$(NODE_INSTALLED): tests/integration/node/package.json tests/integration/node/package-lock.json
	@scripts/bootstrap.sh test
	npm ci --prefix tests/integration/node --no-audit --no-fund --loglevel=error
	@touch $@

$(PROTOCOL_SUITE_INSTALLED): $(addprefix $(PROTOCOL_SUITE)/,$(PROTOCOL_SUITE_FILES))
	@scripts/bootstrap.sh test
	rm -rf $(PROTOCOL_SUITE_COPY)
	mkdir -p $(PROTOCOL_SUITE_COPY)
	cp --no-preserve=mode $^ $(PROTOCOL_SUITE_COPY)/
	npm install --prefix $(PROTOCOL_SUITE_COPY) --no-audit --no-fund --loglevel=error
	@touch $@

$(PROTOCOL_SUITE)/%:
	@echo "rollcall: $@ is missing: make test needs the shared folder (../shared) beside the checkout" >&2
	@exit 1

clean:
	-scripts/services.sh remove .run/dev
	-scripts/services.sh remove .run/test
	rm -rf $(VENV) .run tests/integration/node/node_modules
