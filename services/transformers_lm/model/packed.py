"""A GGUF conversion's int4 model (model/gguf.py's cache folder), stored once beside it: later starts load its
bfloat16 weights, torch's int4 packing of its Linears and its int8 head (precision.head_quantize) as they are,
instead of reading float32, converting and packing again. SmolLM2-135M: from_pretrained's peak memory 1.15 GB ->
0.40 GB, and no torchao packing (~1.4 s). Its bfloat16 model for OnednnLinears (QUANTIZE=none where
precision.onednn_linears holds) is stored the same way, without packed Linears: oneDNN's packing is made at each
start (~0.1 s).

The packing is torch's own layout for the CPU kernel it dispatches to, so the folder's name holds what it
stores (LAYOUTS), the dtype, torch's version and that CPU capability. Only our own cache folders get one, and no
model under an adapter.
"""
import logging
import os
import shutil
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, PretrainedConfig
from transformers.utils import SAFE_WEIGHTS_NAME

from .gguf import WEIGHTS_FILE
from .precision import (INT4_GROUP, Int8Linear, OnednnLinear, PackedInt4Linear, head_quantize, onednn_linears,
                        prepack, quantize, replace_module)

logger = logging.getLogger(__name__)

PACKED_FILE = "int4_linears.safetensors"  # empty in a folder for OnednnLinears
# What a folder holds, by QUANTIZE and the head's quantization: one stored before the int8 head (plain "int4-")
# is not read; an OnednnLinear head is stored in float.
LAYOUTS = {("int4", "int8"): "int4-head8", ("int4", "none"): "int4-headbf16", ("none", "none"): "onednn"}


def packed_folder(source: str, dtype: torch.dtype, quantization: str, adapter) -> str:
    """Where `source`'s int4 or OnednnLinear model is stored, or None where it is not stored (see the module's
    docstring)."""
    stored = quantization == "int4" or quantization == "none" and onednn_linears(dtype, torch.device("cpu"))
    if not stored or adapter or not os.path.isfile(os.path.join(source, WEIGHTS_FILE)):
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    layout = LAYOUTS[quantization, head_quantize(quantization, dtype, torch.device("cpu"))]
    return os.path.join(source, f"{layout}-{str(dtype).removeprefix('torch.')}-{capability}"
                                f"-torch{torch.__version__}")


def is_stored(folder: str) -> bool:
    return folder is not None and os.path.isfile(os.path.join(folder, PACKED_FILE))


def _packed_linears(folder: str, shape) -> dict:
    """The stored PackedInt4Linears and Int8Linear (the head) by module name; `shape(name)` gives an int4 Linear's
    (out, in) features."""
    with safe_open(os.path.join(folder, PACKED_FILE), "pt") as packed:
        group, keys = int(packed.metadata()["group"]), set(packed.keys())

        def parts(name: str, kind) -> list:
            return [packed.get_tensor(f"{name}.{part}") for part in kind.PARTS]

        return {name: PackedInt4Linear(*parts(name, PackedInt4Linear), group, *reversed(shape(name)))
                if f"{name}.{PackedInt4Linear.PARTS[-1]}" in keys else Int8Linear(*parts(name, Int8Linear))
                for name in sorted({key.rpartition(".")[0] for key in keys})}


def load_packed(folder: str, options: dict):
    """The stored model: transformers loads the float weights, then each packed Linear takes its module's place
    (the float weights of those Linears, memory-mapped, are never read), the others prepacked for oneDNN where
    that applies."""
    model = AutoModelForCausalLM.from_pretrained(folder, **options).eval()
    for name, linear in _packed_linears(folder, lambda name: model.get_submodule(name).weight.shape).items():
        linear.bias = model.get_submodule(name).bias
        replace_module(model, name, linear)
    return prepack(model)


LLAMA_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj")


def read_stored(folder: str) -> tuple:
    """(config, weights by their transformers names) of the stored model, read without transformers' model code,
    or None where engine/llama_pass.py can't run it from them: a plain Llama (default rope, SiLU, no biases) whose
    layers' Linears and head are all packed, or OnednnLinears where that applies."""
    config = PretrainedConfig.from_dict(PretrainedConfig.get_config_dict(folder)[0])
    plain = (config.architectures == ["LlamaForCausalLM"] and config.hidden_act == "silu"
             and not getattr(config, "attention_bias", False) and not getattr(config, "mlp_bias", False)
             and (config.rope_parameters or {}).get("rope_type") == "default")
    floats = os.path.join(folder, SAFE_WEIGHTS_NAME)  # a sharded save has an index instead
    if not plain or not os.path.isfile(floats):
        return None
    with safe_open(floats, "pt") as stored:
        weights = _packed_linears(folder, lambda name: stored.get_slice(f"{name}.weight").get_shape())
        linears = {"lm_head"} | {f"model.layers.{index}.{linear}" for index in range(config.num_hidden_layers)
                                 for linear in LLAMA_LINEARS}
        keys = set(stored.keys())
        bf16 = stored.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
        if bf16 and onednn_linears(torch.bfloat16, torch.device("cpu")):
            for name in linears - set(weights):  # a tied head is the embeddings
                key = f"{name}.weight" if f"{name}.weight" in keys else "model.embed_tokens.weight"
                weights[name] = OnednnLinear(stored.get_tensor(key))
        if set(weights) != linears:
            return None
        weights.update((key, stored.get_tensor(key)) for key in stored.keys()
                       if key.removesuffix(".weight") not in linears)
    return config, weights


def quantize_and_store(model, folder: str, kind: str = "int4"):
    """quantize(model, kind), storing the float weights before and the packed ones after in `folder` (written
    under a temporary name, then renamed: a worker that starts meanwhile never sees half of it). A cache it can't
    write costs only the next start's time."""
    partial = None
    try:
        partial = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix=f".partial-{kind}-")
        model.save_pretrained(partial)
    except OSError as error:  # a half-written float copy must never be renamed into place
        logger.warning("not storing the %s weights in %s: %s", kind, folder, error)
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
            partial = None
    model = quantize(model, kind)
    if partial is None:
        return model
    try:
        packed = {name: module for name, module in model.named_modules() if getattr(module, "PARTS", None)}
        save_file({f"{name}.{part}": getattr(module, part).contiguous() for name, module in packed.items()
                   for part in module.PARTS}, os.path.join(partial, PACKED_FILE),
                  metadata={"group": str(INT4_GROUP)})
        os.rename(partial, folder)
        logger.info("Stored the %s weights in %s", kind, folder)
    except OSError as error:  # another worker's rename came first, or the disk is full
        logger.info("not storing the %s weights in %s: %s", kind, folder, error)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return model
