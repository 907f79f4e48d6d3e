# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_work
TORCH_VERSION := 2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu

.PHONY: demo test install clean

$(BIN)/orthodiff: setup.py requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, the pinned release. Without a GPU (no nvidia-smi) the CPU build from PyTorch's CPU index, so
	# pip never downloads a multi-GB CUDA build; where that index is unreachable (an offline mirror), or has no
	# wheel for this platform, the plain `pip install torch==2.13.0`, which on Linux is the CUDA build unless the
	# configured package source offers a CPU one. With nvidia-smi: the plain install (the CUDA build on Linux).
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "make: GPU found (nvidia-smi): pip install torch==$(TORCH_VERSION)"; \
		$(BIN)/python -m pip install -q torch==$(TORCH_VERSION); \
	elif $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(TORCH_CPU_INDEX)/', timeout=15)" 2>/dev/null \
		&& $(BIN)/python -m pip install -q --index-url $(TORCH_CPU_INDEX) torch==$(TORCH_VERSION); then \
		echo "make: no GPU: installed the CPU build of torch $(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
	else \
		echo "make: no GPU, and $(TORCH_CPU_INDEX) unreachable or without a wheel here: pip install torch==$(TORCH_VERSION) from the configured package source"; \
		$(BIN)/python -m pip install -q torch==$(TORCH_VERSION); \
	fi
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[test]"
	$(BIN)/python -c "import torch; print('make: torch', torch.__version__, '(CUDA ' + str(torch.version.cuda) + ')' if torch.version.cuda else '(CPU build)')"
	touch $(BIN)/orthodiff

install: $(BIN)/orthodiff

demo: install
	$(BIN)/python -m orthodiff_auto.demo --work $(DEMO_DIR)

test: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_DIR)
