"""Loading the weights the local engines run (model/source.py says where they are: hub id, folder, .gguf, embedded)."""
import ctypes
import logging
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .adapters import apply_adapter
from .gguf import layer_bits
from .packed import is_stored, load_packed, packed_folder, quantize_and_store
from .precision import Precision, choose_dtype, choose_quantize, quantize
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
    tokenizer = AutoTokenizer.from_pretrained(source, token=settings.hf_token,
                                              trust_remote_code=settings.trust_remote_code)
    packed = packed_folder(source, dtype, quantization, settings.adapter_name_or_path)
    stored = is_stored(packed)
    if stored:
        model, adapter = load_packed(packed, options), None
    else:
        model = AutoModelForCausalLM.from_pretrained(source, **options).to(device).eval()
        model, adapter = apply_adapter(model, settings)
        # After any adapter is merged: its weights are quantized too.
        model = quantize_and_store(model, packed) if packed else quantize(model, quantization)
    return_freed_memory()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("Loaded %s on %s (%s, quantize %s%s) in %.1f s", name, device, dtype, quantization,
                f", as stored in {packed}" if stored else "", time.monotonic() - started)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device,
                       window=model_window(model.config, tokenizer), precision=Precision(dtype, quantization),
                       adapter=adapter)
