"""Which dtype and quantization a model runs in (DTYPE, QUANTIZE), decided on the machine it runs on.

bfloat16 pays on CPUs that compute it natively (AVX512-BF16 or AMX): on an EPYC with AVX512-BF16, generate()
of SmolLM2-135M ran 23.3 tok/s in bf16 against 12.7 in float32. Elsewhere bf16 is emulated and float32 is
exact, so `auto` decides per CPU from its flags, never once for all.
"""
import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as lscpu lists them; empty where /proc/cpuinfo is missing (not Linux)."""
    try:
        with open(path) as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def choose_dtype(name: str, device: torch.device, half_precision: bool, flags: frozenset = None) -> torch.dtype:
    """DTYPE's dtype. `auto`: on a GPU HALF_PRECISION keeps Dream's meaning (bf16, or fp16 where bf16 is not
    supported; float32 without it); on a CPU bf16 where it is native, float32 elsewhere."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        if not half_precision:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if half_precision:
        logger.info("HALF_PRECISION is for GPUs; on CPU DTYPE=auto decides by the CPU's flags")
    native = NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags)
    return torch.bfloat16 if native else torch.float32


@dataclass(frozen=True)
class Precision:
    """What /health reports: the dtype weights and activations run in, and the weight quantization."""
    dtype: torch.dtype
    quantize: str

    def describe(self) -> dict:
        return {"dtype": str(self.dtype).removeprefix("torch."), "quantize": self.quantize}


def keeps_float(name: str, model) -> bool:
    """Layers left in float: the output head (tied to the embeddings in small models), whose int8 rounding
    turned SmolLM2's text into garbage, and an unmerged adapter's small LoRA matrices (PEFT names them lora_*)."""
    head = model.get_output_embeddings()
    return name == "" or ".lora_" in name or head is not None and model.get_submodule(name) is head


def quantize(model, kind: str):
    """QUANTIZE=int8: every Linear but the head gets int8 weights with per-channel scales, through torchao.
    Weight-only: activations keep the model's dtype, so the same kernels serve bf16 and float32."""
    if kind == "none":
        return model
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    def wanted(module, name):
        return isinstance(module, torch.nn.Linear) and not keeps_float(name, model)

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=wanted)
    return model
