"""The ragged pass of a Llama model with less around its maths: the same operations as transformers' LlamaForCausalLM
in the same order (so the same logits, bit for bit), without its module calls and keyword plumbing, and with the
Linears that read the same input (q/k/v, gate/up) run as one int4 kernel call where they are packed in int4.

Measured on 2 cores, SmolLM2-135M in int4, interleaved in one process: a decode step at 1 row 45 -> 37 ms, at 16
rows 202 -> 188 ms. `LlamaPass.of` returns None for other architectures, which run their own forward; an unmerged
adapter's layers run as the modules they are. model_attention.enable checks either against the model's SDPA
forward. `LlamaPass.stored` builds the same pass from stored weights alone (model/packed.py read_stored), with
no transformers model: importing transformers' Llama code costs a start ~3 s of its ~6 (model/loading.py).
"""
import torch
import torch.nn.functional as F

from ..model.precision import PackedInt4Linear


def _rms_norm(weight: torch.Tensor, eps: float, hidden: torch.Tensor) -> torch.Tensor:
    """LlamaRMSNorm.forward's operations."""
    states = hidden.to(torch.float32)
    variance = states.pow(2).mean(-1, keepdim=True)
    return weight * (states * torch.rsqrt(variance + eps)).to(hidden.dtype)


def _signed(sin: torch.Tensor) -> torch.Tensor:
    """`sin` with its first half negated, for _rotate."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _rotate(states: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """apply_rotary_pos_emb's operations for one tensor, rotate_half(x) * sin as roll(x) * _signed(sin): the same
    bits ((-a) * b == a * (-b) exactly), in 4 operations instead of 7 (30 layers: ~0.5 ms a decode step)."""
    return states * cos + states.roll(states.shape[-1] // 2, -1) * signed_sin


def _head_dim(config) -> int:
    """LlamaAttention.head_dim."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class _DefaultRotary:
    """LlamaRotaryEmbedding's operations for rope_type "default" (whose scaling, 1, changes no bit), for a pass
    with no transformers model to take that module from."""

    def __init__(self, config, device):
        dim = _head_dim(config)
        base = config.rope_parameters["rope_theta"]
        self.inv_freq = (1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))).to(device)

    def __call__(self, hidden: torch.Tensor, position_ids: torch.Tensor) -> tuple:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=hidden.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=hidden.dtype), emb.sin().to(dtype=hidden.dtype)


class _Joined:
    """Linears that read the same input as one call: int4 ones share a kernel call where their packing allows
    (PackedInt4Linear.joined), others run one by one."""

    def __init__(self, linears: list):
        self.sizes = [linear.out_features for linear in linears]
        self.linears = linears
        self.packed = None
        if all(type(linear) is PackedInt4Linear and linear.bias is None and linear.group == linears[0].group
               and linear.out_features == linear.qdata.shape[0] for linear in linears):
            self.packed = PackedInt4Linear.joined(linears)

    def __call__(self, hidden: torch.Tensor) -> tuple:
        if self.packed is None:
            return tuple(linear(hidden) for linear in self.linears)
        return self.packed(hidden).split(self.sizes, dim=-1)


class _Layer:
    """Decoder layer `index`: `linear(name)` gives its Linears, `tensor(name)` its norms' weights, by the names
    transformers gives them."""

    def __init__(self, index: int, config, linear, tensor, act):
        prefix = f"model.layers.{index}"
        self.index, self.eps, self.act = index, config.rms_norm_eps, act
        self.head_dim = _head_dim(config)
        self.scale = self.head_dim ** -0.5  # LlamaAttention.scaling
        self.qkv = _Joined([linear(f"{prefix}.self_attn.{name}_proj") for name in "qkv"])
        self.heads = [size // self.head_dim for size in self.qkv.sizes]  # query, key, value heads
        self.o_proj = linear(f"{prefix}.self_attn.o_proj")
        self.gate_up = _Joined([linear(f"{prefix}.mlp.{name}_proj") for name in ("gate", "up")])
        self.down_proj = linear(f"{prefix}.mlp.down_proj")
        self.input_norm = tensor(f"{prefix}.input_layernorm.weight")
        self.post_attention_norm = tensor(f"{prefix}.post_attention_layernorm.weight")

    def __call__(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, plan) -> torch.Tensor:
        shape = (*hidden.shape[:-1], -1, self.head_dim)
        normed = _rms_norm(self.input_norm, self.eps, hidden)
        if self.qkv.packed is None:
            query, key, value = (states.view(shape).transpose(1, 2) for states in self.qkv(normed))
            query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
        else:  # the query and key heads side by side, rotated in one go: each element's operations are the same
            heads = self.qkv.packed(normed).view(shape).transpose(1, 2)
            rotated = self.heads[0] + self.heads[1]
            query, key = _rotate(heads[:, :rotated], cos, sin).split(self.heads[:2], dim=1)
            value = heads[:, rotated:]
        attended = plan.attend(self.index, query, key, value, self.scale)
        hidden = hidden + self.o_proj(attended.reshape(*hidden.shape[:-1], -1).contiguous())
        gate, up = self.gate_up(_rms_norm(self.post_attention_norm, self.eps, hidden))
        return hidden + self.down_proj(self.act(gate) * up)


class LlamaPass:
    """Logits of one ragged pass: `plan` (ragged_attention.RaggedPass) attends, `keep` picks the tokens whose
    logits are wanted."""

    def __init__(self, config, linear, tensor, rotary, act):
        self.embed, self.norm = tensor("model.embed_tokens.weight"), tensor("model.norm.weight")
        self.eps, self.head, self.rotary = config.rms_norm_eps, linear("lm_head"), rotary
        self.layers = [_Layer(index, config, linear, tensor, act) for index in range(config.num_hidden_layers)]

    @classmethod
    def of(cls, model):
        """A LlamaPass for a plain Llama model, else None."""
        from transformers import LlamaForCausalLM  # its module is imported wherever such a model exists

        if type(model) is not LlamaForCausalLM:
            return None
        return cls(model.config, model.get_submodule, model.get_parameter, model.model.rotary_emb,
                   model.model.layers[0].mlp.act_fn)

    @classmethod
    def stored(cls, config, weights: dict, device):
        """The pass of a plain Llama (model/packed.py read_stored's `config`) from `weights` by their transformers
        names: the Linears (PackedInt4Linear, the head Int8Linear) and the tensors."""
        return cls(config, weights.__getitem__, weights.__getitem__, _DefaultRotary(config, device), F.silu)

    def __call__(self, input_ids: torch.Tensor, position_ids: torch.Tensor, plan, keep: torch.Tensor):
        hidden = F.embedding(input_ids, self.embed)
        cos, sin = (part.unsqueeze(1) for part in self.rotary(hidden, position_ids))
        sin = _signed(sin)
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, plan)
        return self.head(_rms_norm(self.norm, self.eps, hidden[:, keep]))[0]
