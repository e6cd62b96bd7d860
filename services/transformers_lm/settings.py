"""Service settings read once from the environment (names follow Dream's transformers_lm), gunicorn's included.

Imports neither torch nor flask: gunicorn.conf.py reads these in the master process.
"""
import os
from dataclasses import dataclass

from common.settings import load, non_negative, number, one_of, parse_flag, positive, setting
from common.speaker_labels import speakers

__all__ = ["DTYPES", "HEAD_QUANTIZE", "QUANTIZATIONS", "Settings", "default_cache_dir", "default_threads",
           "parse_flag", "parse_list"]

# What DTYPE and QUANTIZE may choose besides `auto` (model/precision.py), and /health may report.
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int8", "int4")
HEAD_QUANTIZE = {"int4": "int8"}  # the output head's own quantization under a QUANTIZE; under the others none

# Handler threads beyond the admitted and the held requests (GUNICORN_THREADS' default): for probes, scrapes and
# immediate refusals.
THREAD_RESERVE = 32
# Refusals the door may hold back at once (api/door.py), per request it admits: a load of 5x the capacity.
HOLD_FACTOR = 4


def parse_list(value) -> list:
    """Comma-separated stop strings; a literal \\n stands for a newline (env files can't hold one)."""
    if not value:
        return []
    items = [item.replace("\\n", "\n") for item in value.split(",")]
    return [item for item in items if item.strip()]


def engine_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not (value.startswith(("http://", "https://")) and value.endswith("/v1")):
        raise ValueError("must be an http(s) URL ending in /v1")
    return value


def default_cache_dir() -> str:
    """$XDG_CACHE_HOME/transformers_lm or ~/.cache/transformers_lm"""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "transformers_lm")


def default_threads() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    model_name_or_path: str = setting("PRETRAINED_MODEL_NAME_OR_PATH", str.strip, "",
                                      "hub id, local folder or .gguf file", shown="embedded SmolLM2")
    adapter_name_or_path: str = setting("ADAPTER_NAME_OR_PATH", str.strip, "", "PEFT adapter: hub id or local folder")
    merge_adapter: bool = setting("MERGE_ADAPTER", parse_flag, True, "merge the adapter into the weights")
    half_precision: bool = setting("HALF_PRECISION", parse_flag, False, "bfloat16/float16 on a GPU (DTYPE=auto)")
    dtype: str = setting("DTYPE", one_of("auto", *DTYPES), "auto",
                         "auto: bfloat16 under int4 and on CPUs that compute it natively, float32 on others")
    quantize: str = setting("QUANTIZE", one_of("auto", *QUANTIZATIONS), "auto",
                            "int8/int4: weights but the output head (int8 under int4); auto: int4 for a 4-bit GGUF "
                            "on a CPU")
    language: str = setting("LANGUAGE", lambda text: text.strip().upper(), "EN", "speaker names of the dream format")
    stop_strings: tuple = setting("ADDITIONAL_EOS_TOKENS", lambda text: tuple(parse_list(text)), (),
                                  "comma-separated stop strings", aliases=("EOS_TOKENS",))
    use_flash_attention_2: bool = setting("USE_FLASH_ATTENTION_2", parse_flag, False, "flash attention 2 on a GPU")
    # Runs Python code shipped with a model, as this service: opt-in.
    trust_remote_code: bool = setting("TRUST_REMOTE_CODE", parse_flag, False, "let a model run the code it ships")
    hf_token: str = setting("HF_ACCESS_TOKEN", doc="Hugging Face token for gated models", secret=True)
    service_name: str = setting("SERVICE_NAME", default="transformers_lm", doc="the OpenAPI document's title")
    generative_config: str = setting("GENERATIVE_CONFIG", default="default_generative_config.json",
                                     doc="default generation parameters, a file in common/generative_configs/")
    prompt_format: str = setting("PROMPT_FORMAT", one_of("auto", "chat_template", "dream"), "auto",
                                 "how a dialog becomes a prompt")
    cache_dir: str = setting("MODEL_CACHE_DIR", default=default_cache_dir, doc="GGUF conversion cache")
    torch_threads: int = setting("TORCH_NUM_THREADS", number(int), default_threads, "torch intra-op threads")
    engine: str = setting("ENGINE", one_of("transformers", "openai"), "transformers",
                          "transformers: the model runs here; openai: an OpenAI-compatible server runs it")
    engine_url: str = setting("ENGINE_URL", engine_url, "", "ENGINE=openai: the server's base URL, ending in /v1")
    engine_model: str = setting("ENGINE_MODEL", str.strip, "", "ENGINE=openai: the model id to ask for",
                                shown="the first id of ENGINE_URL/models")
    engine_api_key: str = setting("ENGINE_API_KEY", doc="ENGINE=openai: bearer token of the server", secret=True)
    engine_timeout: float = setting("ENGINE_TIMEOUT", positive(float), 600.0,
                                    "ENGINE=openai: seconds to wait for the server's next byte (504 past)")
    engine_server: str = setting("ENGINE_SERVER", one_of("auto", "vllm", "llama.cpp", "openai", "transformers_lm"),
                                 "auto",
                                 "ENGINE=openai: the parameters it takes; auto: as its /models says")
    batching: str = setting("BATCHING", one_of("continuous", "static"), "continuous", "batching engine")
    prefill_chunk: int = setting("PREFILL_CHUNK", positive(int), 256, "prompt tokens per decoding step")
    prefix_cache_mb: float = setting("PREFIX_CACHE_MB", non_negative(float), 128.0, "prompt prefix cache; 0 is off")
    max_batch_size: int = setting("MAX_BATCH_SIZE", positive(int), 16,
                                  "sequences decoded together (ENGINE=openai: in flight at the server)")
    batch_wait_ms: float = setting("BATCH_WAIT_MS", non_negative(float), 10.0, "static batching's wait for companions")
    request_timeout: float = setting("REQUEST_TIMEOUT", positive(float), 600.0, "seconds a request waits (504 past)")
    max_new_tokens: int = setting("MAX_NEW_TOKENS", positive(int), 2048, "most new tokens a request may ask for")
    max_return_sequences: int = setting("MAX_RETURN_SEQUENCES", positive(int), 8, "most samples per context")
    max_contexts: int = setting("MAX_CONTEXTS", positive(int), 64, "most contexts per request")
    # By default only the model window limits a prompt.
    max_input_tokens: int = setting("MAX_INPUT_TOKENS", positive(int), 1 << 30, "prompt tokens per sample",
                                    shown="the model window")
    max_body_bytes: int = setting("MAX_BODY_BYTES", positive(int), 4 * 1024 * 1024, "request body size (413 above)")
    max_queue: int = setting("MAX_QUEUE", positive(int), 256, "samples waiting for the model (429 above)")
    sentry_dsn: str = setting("SENTRY_DSN", doc="enables Sentry", secret=True)
    api_key: str = setting("API_KEY", doc="bearer token /v1/* requires", secret=True)
    # gunicorn's, read by gunicorn.conf.py; its command-line options win.
    host: str = setting("SERVICE_HOST", default="0.0.0.0", doc="address gunicorn listens on")
    port: int = setting("SERVICE_PORT", non_negative(int), 8130, "port gunicorn listens on")
    workers: int = setting("WORKERS", positive(int), 1, "gunicorn workers, one model copy each")
    threads: int = setting("GUNICORN_THREADS", non_negative(int), 0, "handler threads per worker",
                           shown=f"{HOLD_FACTOR + 1} × (MAX_BATCH_SIZE + MAX_QUEUE) + {THREAD_RESERVE}")
    worker_timeout: int = setting("GUNICORN_TIMEOUT", non_negative(int), 600, "seconds a hung worker lives")
    log_level: str = setting("LOG_LEVEL", one_of("debug", "info", "warning", "error", "critical"), "info",
                             "gunicorn's and the app's log level")

    def __post_init__(self):
        if self.engine == "openai" and not self.engine_url:
            raise ValueError("ENGINE=openai needs ENGINE_URL, the server's base URL ending in /v1")

    @property
    def capacity(self) -> int:
        """Requests the door admits at once (api/door.py): MAX_BATCH_SIZE running plus MAX_QUEUE waiting. Each
        request holds one sample or more, so the engine's own bounds (in samples) stay the tighter ones."""
        return self.max_batch_size + self.max_queue

    @property
    def held_refusals(self) -> int:
        """Refusals the door may hold back at once, each asleep in a handler thread: HOLD_FACTOR per admitted
        request, or what GUNICORN_THREADS leaves beyond the admitted requests and THREAD_RESERVE."""
        if self.threads:
            return max(0, self.threads - self.capacity - THREAD_RESERVE)
        return HOLD_FACTOR * self.capacity

    @property
    def handler_threads(self) -> int:
        """GUNICORN_THREADS, by default a thread for every admitted or held request and THREAD_RESERVE more."""
        return self.threads or self.capacity + self.held_refusals + THREAD_RESERVE

    @property
    def speakers(self) -> tuple:
        return speakers(self.language)

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        return load(cls, env)
