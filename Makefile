# coursebot: `make run` starts the bot, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run shell test fuzz lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,demos]"
	touch $@

install: $(BIN)/.installed

run: install  ## Discord/Slack when their tokens are in .env, else the terminal shell
	$(BIN)/coursebot run

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

clean:
	rm -rf $(VENV) data/coursebot.db* .pytest_cache .ruff_cache
