"""Finding and loading the model: hub id, local folder, .gguf file or the embedded SmolLM2."""
import logging
import os
import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .gguf import convert_gguf, embedded_gguf_path

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: torch.device
    window: int  # prompt + reply tokens the model can attend to


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
    """(device, dtype): half precision only on a GPU; CPU always float32 (faster here, and exact)."""
    if torch.cuda.is_available():
        if not settings.half_precision:
            return torch.device("cuda"), torch.float32
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    if settings.half_precision:
        logger.info("HALF_PRECISION ignored: no GPU, running float32 on CPU")
    return torch.device("cpu"), torch.float32


def model_window(model, tokenizer) -> int:
    """Positions the model can attend to; tokenizers often report a huge placeholder instead."""
    config = model.config
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def load_model(settings) -> LoadedModel:
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
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("Loaded %s on %s (%s) in %.1f s", name, device, dtype, time.monotonic() - started)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device,
                       window=model_window(model, tokenizer))
