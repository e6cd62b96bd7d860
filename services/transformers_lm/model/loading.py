"""Loading the weights the local engines run (model/source.py says where they are: hub id, folder, .gguf, embedded)."""
import ctypes
import logging
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from .adapters import apply_adapter
from .gguf import layer_bits
from .packed import is_stored, load_packed, packed_folder, quantize_and_store, read_stored
from .precision import Precision, choose_dtype, choose_quantize, onednn_linears, quantize
from .source import LoadedModel, model_window, resolve_source

logger = logging.getLogger(__name__)


def choose_precision(settings, source: str) -> tuple:
    """(device, dtype, quantization): a GPU if there is one; dtype and quantization as DTYPE and QUANTIZE say
    for this device and source (model/precision.py)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quantization = choose_quantize(settings.quantize, device, layer_bits(source))
    dtype = choose_dtype(settings.dtype, device, settings.half_precision, quantization=quantization)
    return device, dtype, quantization


def return_freed_memory():
    """Give the heap that loading freed back to the system: glibc keeps it otherwise, and converting SmolLM2's
    float32 cache to bfloat16 and packing it in int4 left ~420 MB of the worker's 920 MB unused (glibc only)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own symbols: libc's where it is glibc
    if trim:
        trim(0)


def load_model(settings) -> LoadedModel:
    started = time.monotonic()
    torch.set_num_threads(max(1, settings.torch_threads))
    name, source = resolve_source(settings)
    device, dtype, quantization = choose_precision(settings, source)
    # trust_remote_code is always explicit: only TRUST_REMOTE_CODE=1 lets a model's own code run here.
    options = {"dtype": dtype, "token": settings.hf_token, "trust_remote_code": settings.trust_remote_code}
    if settings.use_flash_attention_2 and device.type == "cuda":
        options["attn_implementation"] = "flash_attention_2"
    packed = packed_folder(source, dtype, quantization, settings.adapter_name_or_path)
    stored = is_stored(packed)
    # The continuous engine runs a stored plain Llama from its weights alone: no transformers model (its code
    # is most of a start's imports) until something needs it (beam search, embeddings).
    light = stored and settings.batching == "continuous" and read_stored(packed)
    tokenizer = AutoTokenizer.from_pretrained(source, config=light[0] if light else None, token=settings.hf_token,
                                              trust_remote_code=settings.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if light:
        model, adapter = None, None
        extra = {"config": light[0], "weights": light[1], "generation_config": GenerationConfig.from_pretrained(packed),
                 "load_model": lambda: load_packed(packed, options)}
    elif stored:
        model, adapter, extra = load_packed(packed, options), None, {}
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **options).to(device).eval()
        model, adapter = apply_adapter(model, settings)
        # After any adapter is merged: its weights are quantized too.
        model = quantize_and_store(model, packed, quantization) if packed else quantize(model, quantization)
        extra = {}
    return_freed_memory()
    where = (f", as stored in {packed}" + (", run from its weights alone" if light else "")) if stored else ""
    logger.info("Loaded %s on %s (%s, quantize %s%s) in %.1f s", name, device, dtype, quantization, where,
                time.monotonic() - started)
    window = model_window(light[0] if light else model.config.get_text_config(), tokenizer)
    return LoadedModel(name, model, tokenizer, device, window,
                       Precision(dtype, quantization, onednn_linears(dtype, device)), adapter, **extra)
