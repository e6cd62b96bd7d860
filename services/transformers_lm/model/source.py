"""What a model is called, where its files are and what its tokenizer and window are: all a front (ENGINE=openai)
needs, so this module imports no torch (model/loading.py loads weights)."""
import logging
import os
from dataclasses import dataclass
from typing import Optional

from transformers import AutoConfig, AutoTokenizer

from .gguf import convert_gguf, embedded_gguf_path

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: object  # a torch.device; None for a front
    window: int  # prompt + reply tokens the model can attend to
    precision: object = None  # model/precision.py Precision; None for a front
    adapter: Optional[str] = None  # ADAPTER_NAME_OR_PATH, as /health and /v1/models name it


def resolve_source(settings) -> tuple:
    """(display name, what from_pretrained loads) for PRETRAINED_MODEL_NAME_OR_PATH."""
    name = settings.model_name_or_path
    if not name:
        return EMBEDDED_NAME, convert_gguf(embedded_gguf_path(), settings.cache_dir)
    if name.endswith(".gguf"):
        if not os.path.isfile(name):
            raise RuntimeError(f"GGUF file not found: {name}")
        return os.path.basename(name), convert_gguf(name, settings.cache_dir)
    return name, name


def model_window(config, tokenizer) -> int:
    """Positions the model (of this config) can attend to; tokenizers often report a huge placeholder instead."""
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def load_tokenizer(settings) -> LoadedModel:
    """ENGINE=openai: the model's tokenizer and window (its config), no weights: another server runs it."""
    name, source = resolve_source(settings)
    options = {"token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    window = model_window(AutoConfig.from_pretrained(source, **options).get_text_config(), tokenizer)
    logger.info("Loaded the tokenizer of %s (window %d); %s runs the model", name, window, settings.engine_url)
    return LoadedModel(name=name, model=None, tokenizer=tokenizer, device=None, window=window)
