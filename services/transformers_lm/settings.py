"""Service settings read once from the environment (names follow Dream's transformers_lm)."""
import os
from dataclasses import dataclass, field

from common.speaker_labels import speakers

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"", "0", "false", "no", "off", "none"}


def parse_flag(value, default: bool = False) -> bool:
    """Lenient 0/1/true/false parsing: Dream crashed on int("") for HALF_PRECISION=""."""
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise ValueError(f"expected a boolean flag (0/1/true/false), got {value!r}")


def parse_list(value) -> list:
    """Comma-separated stop strings; a literal \\n stands for a newline (env files can't hold one)."""
    if not value:
        return []
    items = [item.replace("\\n", "\n") for item in value.split(",")]
    return [item for item in items if item.strip()]


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "transformers_lm")


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    model_name_or_path: str = ""
    half_precision: bool = False
    language: str = "EN"
    stop_strings: tuple = ()
    use_flash_attention_2: bool = False
    trust_remote_code: bool = False  # run Python code shipped with a model: opt-in, it executes as this service
    hf_token: str = field(default=None, repr=False)
    service_name: str = "transformers_lm"
    generative_config: str = "default_generative_config.json"
    prompt_format: str = "auto"
    cache_dir: str = field(default_factory=default_cache_dir)
    torch_threads: int = field(default_factory=default_threads)
    batching: str = "continuous"
    prefill_chunk: int = 256
    prefix_cache_mb: float = 128.0
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    request_timeout: float = 600.0
    max_new_tokens: int = 2048
    max_return_sequences: int = 8
    max_contexts: int = 64
    max_input_tokens: int = 1 << 30  # MAX_INPUT_TOKENS; by default only the model window limits a prompt
    max_body_bytes: int = 4 * 1024 * 1024
    max_queue: int = 256
    sentry_dsn: str = field(default=None, repr=False)
    api_key: str = field(default=None, repr=False)

    @property
    def speakers(self) -> tuple:
        return speakers(self.language)

    @classmethod
    def from_env(cls, env=None) -> "Settings":
        env = os.environ if env is None else env
        prompt_format = (env.get("PROMPT_FORMAT") or "auto").strip().lower()
        if prompt_format not in ("auto", "chat_template", "dream"):
            raise ValueError(f"PROMPT_FORMAT must be auto, chat_template or dream, got {prompt_format!r}")
        batching = (env.get("BATCHING") or "continuous").strip().lower()
        if batching not in ("continuous", "static"):
            raise ValueError(f"BATCHING must be continuous or static, got {batching!r}")
        return cls(
            model_name_or_path=(env.get("PRETRAINED_MODEL_NAME_OR_PATH") or "").strip(),
            half_precision=parse_flag(env.get("HALF_PRECISION")),
            language=(env.get("LANGUAGE") or "EN").strip().upper(),
            stop_strings=tuple(parse_list(env.get("ADDITIONAL_EOS_TOKENS", env.get("EOS_TOKENS")))),
            use_flash_attention_2=parse_flag(env.get("USE_FLASH_ATTENTION_2")),
            trust_remote_code=parse_flag(env.get("TRUST_REMOTE_CODE")),
            hf_token=env.get("HF_ACCESS_TOKEN") or None,
            service_name=env.get("SERVICE_NAME") or "transformers_lm",
            generative_config=env.get("GENERATIVE_CONFIG") or "default_generative_config.json",
            prompt_format=prompt_format,
            cache_dir=env.get("MODEL_CACHE_DIR") or default_cache_dir(),
            torch_threads=int(env.get("TORCH_NUM_THREADS") or default_threads()),
            batching=batching,
            prefill_chunk=int(env.get("PREFILL_CHUNK") or 256),
            prefix_cache_mb=float(env.get("PREFIX_CACHE_MB") or 128.0),
            max_batch_size=int(env.get("MAX_BATCH_SIZE") or 16),
            batch_wait_ms=float(env.get("BATCH_WAIT_MS") or 10.0),
            request_timeout=float(env.get("REQUEST_TIMEOUT") or 600.0),
            max_new_tokens=int(env.get("MAX_NEW_TOKENS") or 2048),
            max_return_sequences=int(env.get("MAX_RETURN_SEQUENCES") or 8),
            max_contexts=int(env.get("MAX_CONTEXTS") or 64),
            max_input_tokens=int(env.get("MAX_INPUT_TOKENS") or 1 << 30),
            max_body_bytes=int(env.get("MAX_BODY_BYTES") or 4 * 1024 * 1024),
            max_queue=int(env.get("MAX_QUEUE") or 256),
            sentry_dsn=env.get("SENTRY_DSN") or None,
            api_key=env.get("API_KEY") or None,
        )
