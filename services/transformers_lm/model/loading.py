"""Finding and loading the model: hub id, local folder, .gguf file or the embedded SmolLM2."""
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from .adapters import apply_adapter
from .gguf import convert_gguf, embedded_gguf_path
from .precision import Precision, choose_dtype, quantize

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: torch.device
    window: int  # prompt + reply tokens the model can attend to
    precision: Precision = Precision(torch.float32, "none")
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


def choose_device(settings) -> tuple:
    """(device, dtype): a GPU if there is one; the dtype as DTYPE says (model/precision.py)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, choose_dtype(settings.dtype, device, settings.half_precision)


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


def load_model(settings) -> LoadedModel:
    if settings.engine == "openai":
        return load_tokenizer(settings)
    started = time.monotonic()
    torch.set_num_threads(max(1, settings.torch_threads))
    name, source = resolve_source(settings)
    device, dtype = choose_device(settings)
    # trust_remote_code is always explicit: only TRUST_REMOTE_CODE=1 lets a model's own code run here.
    options = {"dtype": dtype, "token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
    if settings.use_flash_attention_2 and device.type == "cuda":
        options["attn_implementation"] = "flash_attention_2"
    tokenizer = AutoTokenizer.from_pretrained(source, token=settings.hf_token,
                                              trust_remote_code=settings.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(source, **options).to(device).eval()
    model, adapter = apply_adapter(model, settings)
    model = quantize(model, settings.quantize)  # after any adapter is merged: its weights are quantized too
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("Loaded %s on %s (%s, quantize %s) in %.1f s", name, device, dtype, settings.quantize,
                time.monotonic() - started)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device,
                       window=model_window(model.config, tokenizer), precision=Precision(dtype, settings.quantize),
                       adapter=adapter)
