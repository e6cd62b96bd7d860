"""A GGUF conversion's int4 model (model/gguf.py's cache folder), stored once beside it: later starts load its
bfloat16 weights and torch's int4 packing of its Linears as they are, instead of reading float32, converting and
packing again. SmolLM2-135M: from_pretrained's peak memory 1.15 GB -> 0.40 GB, and no torchao packing (~1.4 s).

The packing is torch's own layout for the CPU kernel it dispatches to, so the folder's name holds the dtype,
torch's version and that CPU capability. Only our own cache folders get one, and no model under an adapter.
"""
import logging
import os
import shutil
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from .gguf import WEIGHTS_FILE
from .precision import INT4_GROUP, PackedInt4Linear, quantize, replace_module

logger = logging.getLogger(__name__)

PACKED_FILE = "int4_linears.safetensors"
PARTS = ("qdata", "scale_and_zero")


def packed_folder(source: str, dtype: torch.dtype, quantization: str, adapter) -> str:
    """Where `source`'s int4 model is stored, or None where it is not stored (see the module's docstring)."""
    if quantization != "int4" or adapter or not os.path.isfile(os.path.join(source, WEIGHTS_FILE)):
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return os.path.join(source, f"int4-{str(dtype).removeprefix('torch.')}-{capability}-torch{torch.__version__}")


def is_stored(folder: str) -> bool:
    return folder is not None and os.path.isfile(os.path.join(folder, PACKED_FILE))


def load_packed(folder: str, options: dict):
    """The stored model: transformers loads the float weights, then each packed Linear takes its module's place
    (the float weights of those Linears, memory-mapped, are never read)."""
    model = AutoModelForCausalLM.from_pretrained(folder, **options).eval()
    with safe_open(os.path.join(folder, PACKED_FILE), "pt") as packed:
        group = int(packed.metadata()["group"])
        names = sorted({key.rpartition(".")[0] for key in packed.keys()})
        for name in names:
            linear = model.get_submodule(name)
            replace_module(model, name, PackedInt4Linear(*(packed.get_tensor(f"{name}.{part}") for part in PARTS),
                                                         group, linear.in_features, linear.out_features, linear.bias))
    return model


def quantize_and_store(model, folder: str):
    """quantize(model, "int4"), storing the float weights before and the packed ones after in `folder` (written
    under a temporary name, then renamed: a worker that starts meanwhile never sees half of it). A cache it can't
    write costs only the next start's time."""
    partial = None
    try:
        partial = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=".partial-int4-")
        model.save_pretrained(partial)
    except OSError as error:  # a half-written float copy must never be renamed into place
        logger.warning("not storing the int4 weights in %s: %s", folder, error)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
            partial = None
    model = quantize(model, "int4")
    if partial is None:
        return model
    try:
        packed = {name: module for name, module in model.named_modules() if isinstance(module, PackedInt4Linear)}
        save_file({f"{name}.{part}": getattr(module, part).contiguous() for name, module in packed.items()
                   for part in PARTS}, os.path.join(partial, PACKED_FILE),
                  metadata={"group": str(INT4_GROUP)})
        os.rename(partial, folder)
        logger.info("Stored the int4 weights in %s", folder)
    except OSError as error:  # another worker's rename came first, or the disk is full
        logger.info("not storing the int4 weights in %s: %s", folder, error)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return model
