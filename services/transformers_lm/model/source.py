"""What a model is called, where its files are and what its tokenizer and window are: all a front (ENGINE=openai)
needs, so this module imports no torch (model/loading.py loads weights)."""
import logging
import os
import threading
import time
from typing import Optional

from transformers import AutoConfig, AutoTokenizer

from .gguf import convert_gguf, embedded_gguf_path

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"


class LoadedModel:
    """A model as the engines see it. `model` is the transformers model; where `load_model` is given instead it is
    loaded at first use (beam search, embeddings, tests): a pass built from stored weights alone serves the rest
    (model/loading.py). `config` (the text config) and `generation_config` never load it."""

    def __init__(self, name: str, model, tokenizer, device, window: int, precision=None, adapter: Optional[str] = None,
                 *, config=None, generation_config=None, weights: Optional[dict] = None, load_model=None):
        self.name, self.tokenizer = name, tokenizer
        self.device = device  # a torch.device; None for a front
        self.window = window  # prompt + reply tokens the model can attend to
        self.precision = precision  # model/precision.py Precision; None for a front
        self.adapter = adapter  # ADAPTER_NAME_OR_PATH, as /health and /v1/models name it
        self.weights = weights  # model/packed.py read_stored's weights where the pass is built from them
        self._model, self._load_model, self._lock = model, load_model, threading.Lock()
        self._config, self._generation_config = config, generation_config

    @property
    def model(self):
        with self._lock:
            if self._model is None and self._load_model is not None:
                started = time.monotonic()
                self._model, self._load_model = self._load_model(), None
                logger.info("Loaded the transformers model of %s too in %.1f s", self.name, time.monotonic() - started)
        return self._model

    @property
    def config(self):
        if self._config is None and self._model is not None:
            return self._model.config.get_text_config()
        return self._config

    @property
    def generation_config(self):
        return self._generation_config if self._generation_config is not None else self.model.generation_config


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
