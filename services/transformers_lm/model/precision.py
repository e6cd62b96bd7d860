"""Which dtype and quantization a model runs in (DTYPE, QUANTIZE), decided on the machine it runs on.

bfloat16 pays on CPUs that compute it natively (AVX512-BF16 or AMX): on an EPYC with AVX512-BF16, generate()
of SmolLM2-135M ran 23.3 tok/s in bf16 against 12.7 in float32. Elsewhere bf16 is emulated and float32 is
exact, so `auto` decides per CPU from its flags, never once for all.

Decoding on a CPU is bound by reading the weights: torch's int4 kernel (groups of 32, bf16 activations) reads
a quarter of float32's bytes; served SmolLM2 gave 2.18x float32's tokens/s at 1 client, 1.67x at 8, 1.11x at 16
on an AVX2 EPYC (where bf16's head and attention are emulated).
A 4-bit GGUF (the embedded model's Q4_1) is already on such a grid, so `auto` runs it in int4 on a CPU.
Where bf16 runs on AMX, float Linears run with their weights prepacked for oneDNN (OnednnLinear).
"""
import logging
from dataclasses import dataclass
from functools import lru_cache

import torch

from .. import settings

logger = logging.getLogger(__name__)

DTYPES = {name: getattr(torch, name) for name in settings.DTYPES}
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ONEDNN_FLAGS = frozenset({"amx_bf16"})  # where OnednnLinear was measured to pay
BF16_ATTENTION_FLAGS = frozenset({"amx_bf16"})  # where SDPA's bf16 kernel was measured to pay
ALIGNMENT = 64  # bytes: what torch's CPU allocator gives, what Int8Linear's kernel needs (16) at most
INT4_GROUP = 32  # the block of GGUF's Q4_0/Q4_1: their weights re-quantize onto the same grid


@lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags as lscpu lists them; empty where /proc/cpuinfo is missing (not Linux). Read once:
    the load asks for each Linear and /health for its head."""
    try:
        with open(path) as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def int4_kernel() -> bool:
    """Does this torch have the int4 CPU matmul torchao's packed int4 weights call?"""
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu")


def onednn_linears(dtype: torch.dtype, device: torch.device, flags: frozenset = None) -> bool:
    """Do float Linears run as OnednnLinear here: bf16 on a CPU with AMX? There (an AVX512/AMX Xeon, 2 cores)
    SmolLM2's bf16 decode step took 32.1 / 47.0 / 55.6 ms at 1 / 8 / 16 rows against F.linear's 33.9 / 48.5 /
    63.6 (which reorders each weight at every call), and each row kept its bits whatever rows shared the call."""
    return (dtype == torch.bfloat16 and device.type == "cpu" and bool(ONEDNN_FLAGS & (cpu_flags() if flags is None
                                                                                    else flags))
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose_quantize(name: str, device: torch.device, layer_bits) -> str:
    """QUANTIZE's quantization. `auto`: int4 on a CPU for a GGUF whose layers have at most 4 bits (model/gguf.py
    layer_bits); weights that came in wider keep their precision unless QUANTIZE says otherwise."""
    if name == "int4" and device.type != "cpu":
        raise ValueError("QUANTIZE=int4 is torch's CPU kernel; on a GPU use int8, or ENGINE=openai in front of vLLM")
    if name != "auto":
        return name
    four_bit = device.type == "cpu" and layer_bits is not None and layer_bits <= 4
    return "int4" if four_bit and int4_kernel() else "none"


def choose_dtype(name: str, device: torch.device, half_precision: bool, flags: frozenset = None,
                 quantization: str = "none") -> torch.dtype:
    """DTYPE's dtype. `auto`: bf16 under int4 (its kernel's activations); on a GPU HALF_PRECISION keeps Dream's
    meaning (bf16, or fp16 where bf16 is not supported; float32 without it); on a CPU bf16 where it is native,
    float32 elsewhere."""
    if name != "auto":
        if quantization == "int4" and name != "bfloat16":
            logger.warning("QUANTIZE=int4 with DTYPE=%s has no fast kernel: DTYPE=bfloat16 is several times faster",
                           name)
        return DTYPES[name]
    if quantization == "int4":
        return torch.bfloat16
    if device.type == "cuda":
        if not half_precision:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if half_precision:
        logger.info("HALF_PRECISION is for GPUs; on CPU DTYPE=auto decides by the CPU's flags")
    native = NATIVE_BF16_FLAGS & (cpu_flags() if flags is None else flags)
    return torch.bfloat16 if native else torch.float32


@lru_cache(maxsize=None)
def attention_dtype(dtype: torch.dtype, device: torch.device, flags: frozenset = None) -> torch.dtype:
    """The dtype attention runs in for a model in `dtype`: float32 for bf16 on a CPU without AMX, where SDPA's
    bf16 kernel is slow (EPYC with AVX512-BF16, 2 threads: one query over 200 keys 115 us in bf16, 19 us in
    float32; SmolLM2's int4 decode step at 16 rows spent 66 of its 113 ms there), else `dtype`. Exact either way
    for bf16 inputs; keys and values are cached in it."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not BF16_ATTENTION_FLAGS & (cpu_flags() if flags is None
                                                                                         else flags):
        return torch.float32
    return dtype


def sdpa_attention(module, query, key, value, *args, **kwargs) -> tuple:
    """transformers' SDPA attention in attention_dtype, its output in the query's dtype: what every transformers
    model here attends with (see prepack), as the engines' ragged passes do."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    wanted = attention_dtype(dtype, query.device)
    if wanted == dtype:
        return sdpa_attention_forward(module, query, key, value, *args, **kwargs)
    output, weights = sdpa_attention_forward(module, query.to(wanted), key.to(wanted), value.to(wanted), *args,
                                             **kwargs)
    return output.to(dtype), weights


@dataclass(frozen=True)
class Precision:
    """What /health reports: the dtype weights and activations run in, and the weight quantization."""
    dtype: torch.dtype
    quantize: str
    onednn: bool = False  # float Linears run as OnednnLinear

    def describe(self) -> dict:
        return {"dtype": str(self.dtype).removeprefix("torch."), "quantize": self.quantize,
                # int4, the one quantization with a head of its own, runs on a CPU only
                "head_quantize": head_quantize(self.quantize, self.dtype, torch.device("cpu")),
                "onednn_linears": self.onednn}


def keeps_float(name: str, model) -> bool:
    """Layers the weight quantization leaves alone: the output head (tied to the embeddings in small models),
    whose per-tensor int8 rounding turned SmolLM2's text into garbage and int4 raised its perplexity by 7 %
    (under int4 it gets per-channel int8 of its own, Int8Linear, see head_quantize), and an unmerged adapter's
    small LoRA matrices (PEFT names them lora_*)."""
    head = model.get_output_embeddings()
    return name == "" or ".lora_" in name or head is not None and model.get_submodule(name) is head


def head_quantize(kind: str, dtype: torch.dtype, device: torch.device) -> str:
    """The output head's own quantization under QUANTIZE=kind: settings.HEAD_QUANTIZE's, but where the head runs
    as an OnednnLinear (onednn_linears), which on the AMX Xeon beat int8's kernel (compute-bound there from a few
    rows): SmolLM2 int4 decode step 14.4 / 35.9 / 62.4 ms at 1 / 8 / 16 rows with the int8 head, 14.9 / 33.3 / 56.1
    with the bf16 one (perplexity 1.0038x float32's there, against 1.0040x with the int8 head)."""
    wanted = settings.HEAD_QUANTIZE.get(kind, "none")
    return "none" if wanted == "int8" and onednn_linears(dtype, device) else wanted


def quantize(model, kind: str, head: str = None):
    """Weight-only quantization of every Linear but the head, through torchao: activations keep the model's dtype.
    int8: per-channel scales. int4: asymmetric groups of INT4_GROUP inputs packed for torch's CPU kernel (torchao
    0.18 has this packing under its prototype namespace); a Linear whose inputs are no multiple of the group stays
    float. The head gets `head`'s quantization, head_quantize's by default; what stays float is prepacked where
    onednn_linears says so."""
    if kind == "none":
        return prepack(model)
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    if kind == "int4":
        from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig
        config, group = PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP), INT4_GROUP
    else:
        config, group = Int8WeightOnlyConfig(), 1

    def wanted(module, name):
        return (isinstance(module, torch.nn.Linear) and module.in_features % group == 0
                and not keeps_float(name, model))

    quantize_(model, config, filter_fn=wanted)
    if kind == "int4":  # the very Linears torchao just packed
        for name, module in list(model.named_modules()):
            if wanted(module, name):
                replace_module(model, name, PackedInt4Linear.of(module))
    output = model.get_output_embeddings()
    if head is None and output is not None:
        head = head_quantize(kind, output.weight.dtype, output.weight.device)
    if head == "int8" and type(output) is torch.nn.Linear:
        # a tied head gets a weight of its own: the embeddings stay as they are
        quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda module, _: module is output)
        replace_module(model, next(name for name, module in model.named_modules() if module is output),
                       Int8Linear.of(output))
    return prepack(model)


def prepack(model):
    """Every Linear still in float as an OnednnLinear where onednn_linears says so for its weight (an unmerged
    adapter's small LoRA matrices stay as they are); and sdpa_attention registered as transformers' "sdpa" (its
    library-wide override): generate(), the static engine and the quality gate then attend as the continuous
    engine does, bit for bit. Here, where a transformers model exists: a light start never imports its code."""
    from transformers import AttentionInterface

    AttentionInterface.register("sdpa", sdpa_attention)
    for name, module in list(model.named_modules()):
        if (type(module) is torch.nn.Linear and ".lora_" not in name and type(module.weight.detach()) is torch.Tensor
                and onednn_linears(module.weight.dtype, module.weight.device)):  # not int8's torchao tensors
            replace_module(model, name, OnednnLinear(module.weight, module.bias))
    return model


def replace_module(model, name: str, module: torch.nn.Module):
    """Put `module` where `model`'s submodule `name` is."""
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent), attribute, module)


class PackedLinear(torch.nn.Module):
    """A Linear whose weight a torch CPU kernel reads as packed: `_rows` maps [rows, in_features] to at least
    out_features columns. `PARTS` names the tensors model/packed.py stores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._rows(x.reshape(-1, self.in_features).contiguous())
        if y.shape[1] != self.out_features:  # outputs the packing padded
            y = y[:, :self.out_features]
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class PackedInt4Linear(PackedLinear):
    """A Linear whose weight torchao packed in int4 (its Int4OpaqueTensor), calling torch's CPU kernel itself: the
    tensor subclass's dispatch in Python took ~25 ms of a 65 ms SmolLM2 decode step at 1 row (210 Linear calls)."""

    PARTS = ("qdata", "scale_and_zero")

    def __init__(self, qdata: torch.Tensor, scale_and_zero: torch.Tensor, group: int, in_features: int,
                 out_features: int, bias: torch.Tensor = None):
        super().__init__()
        self.qdata, self.scale_and_zero, self.group, self.bias = qdata, scale_and_zero, group, bias
        self.in_features, self.out_features = in_features, out_features

    @classmethod
    def of(cls, linear: torch.nn.Linear) -> "PackedInt4Linear":
        weight = linear.weight
        assert weight.act_pre_scale is None  # weight-only: the activations go in as they are
        packed = cls(weight.qdata, weight.scale_and_zero, weight.block_size[1], linear.in_features,
                     linear.out_features, linear.bias)
        packed.weight = weight  # torchao's tensor stays, to inspect or save
        return packed

    @classmethod
    def joined(cls, parts: list):
        """One Linear for `parts` (same input and group, no bias): their outputs side by side, or None where the
        packing does not allow it. torch packs the weights in blocks of output rows (32 on an AVX2 EPYC with a
        tail block of 16, 64 on an AVX512 Xeon), so joining works when all parts but the last fill whole blocks:
        checked on a probe input. The kernel computes each output column alone, so the results are the parts' bit
        for bit."""
        joined = cls(torch.cat([part.qdata for part in parts]), torch.cat([part.scale_and_zero for part in parts], 1),
                     parts[0].group, parts[0].in_features, sum(part.out_features for part in parts))
        probe = torch.randn(3, joined.in_features, generator=torch.Generator().manual_seed(0)).to(
            device=joined.qdata.device, dtype=joined.scale_and_zero.dtype)
        return joined if torch.equal(joined(probe), torch.cat([part(probe) for part in parts], -1)) else None

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.qdata, self.group, self.scale_and_zero)


class Int8Linear(PackedLinear):
    """A Linear in per-channel int8 (torchao's Int8WeightOnlyConfig) calling torch's CPU kernel itself: the head
    under QUANTIZE=int4, where the GGUF's own head is 8-bit (SmolLM2's Q8_0). SmolLM2's perplexity on the gate's
    text: 1.0033x float32's against 1.0032x with a bf16 head; the head's matmul on 2 AVX2 cores 4.3 -> 3.9 ms
    at 1 row, 28 -> 12 ms at 8 and 55 -> 19 ms at 16 (emulated bf16 is compute-bound there)."""
    PARTS = ("qdata", "scale")

    def __init__(self, qdata: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor = None):
        super().__init__()
        # The kernel's AVX512 path segfaults from 4 rows on when the weight is not 16-byte aligned, and safetensors
        # aligns a stored (memory-mapped) tensor to 8 bytes only: such a weight gets a copy of torch's (64-byte).
        self.qdata = qdata if qdata.data_ptr() % ALIGNMENT == 0 else qdata.clone()
        self.scale, self.bias = scale, bias
        self.out_features, self.in_features = qdata.shape

    @classmethod
    def of(cls, linear: torch.nn.Linear) -> "Int8Linear":
        weight = linear.weight  # torchao's Int8Tensor: scales are float32, the kernel takes the activations' dtype
        return cls(weight.qdata, weight.scale.reshape(-1).to(weight.dtype), linear.bias)

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(rows, self.qdata, self.scale)


class OnednnLinear(torch.nn.Module):
    """A bf16 Linear whose weight oneDNN holds prepacked (where onednn_linears says so), the bias added in the same
    call as F.linear adds it. Packed for one row, each row's output has the bits it has alone however many rows
    share the call (checked up to 600 rows on an AMX Xeon), which F.linear's lost from 33 rows on: a greedy reply
    stays the same under any load, and the same as generate()'s, which runs these very modules."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)  # opaque: packed at each start
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features).contiguous(), self.packed,
                                                  self.bias, "none", [], "")
        return rows.reshape(*x.shape[:-1], self.out_features)
