"""Ragged attention inside a transformers model: `ragged` registered as an attention implementation that is plain
SDPA unless a forward passes `ragged=` (a ragged_attention.RaggedPass). `enable` switches a model to it only after
checking that its passes give SDPA's results.
"""
import inspect
import logging
from functools import lru_cache, partial

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ..model.precision import sdpa_attention
from .kv_batch import KVBatch, Prefill
from .llama_pass import LlamaPass
from .ragged_attention import RaggedPass, forward

logger = logging.getLogger(__name__)

NAME = "ragged"
# transformers passes a prepared 4D mask through untouched; attention here builds its own masks.
_NO_MASK = torch.empty(0, 0, 0, 0, dtype=torch.bool)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, ragged=None, **kwargs):
    if ragged is None:
        return sdpa_attention(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if kwargs.get("sliding_window") or kwargs.get("softcap"):
        raise NotImplementedError("ragged attention has no sliding window or soft-capping")
    return ragged.attend(module.layer_idx, query, key, value, scaling), None


AttentionInterface.register(NAME, _attention)
AttentionMaskInterface.register(NAME, sdpa_mask)  # generate() on the same model keeps SDPA's masks


@lru_cache(maxsize=None)
def _takes_logits_to_keep(model_class) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def own_pass(model, input_ids, position_ids, plan: RaggedPass, keep) -> torch.Tensor:
    """The model's own forward with `ragged=`: the logits of the `keep` tokens."""
    inputs = {"logits_to_keep": keep} if _takes_logits_to_keep(type(model)) else {}
    logits = model(input_ids=input_ids, position_ids=position_ids, attention_mask=_NO_MASK.to(input_ids.device),
                   use_cache=False, ragged=plan, **inputs).logits[0]
    return logits if inputs else logits[keep]


def model_pass(model):
    """What runs `model`'s ragged passes: llama_pass.LlamaPass for a plain Llama, else its own forward."""
    return LlamaPass.of(model) or partial(own_pass, model)


def enable(model):
    """Switch `model` to ragged attention if its ragged passes give what its own SDPA forward does, and return
    what runs them (for `forward`); else leave the model as it was and return None."""
    if model.config._attn_implementation == NAME:
        return model_pass(model)
    if model.config._attn_implementation != "sdpa":
        return None
    model.set_attn_implementation(NAME)
    run_pass = None
    try:
        if model.config._attn_implementation == NAME:
            run_pass = model_pass(model)
            run_pass = run_pass if _agrees_with_sdpa(model, run_pass) else None
    except Exception as error:
        logger.info("%s can't run ragged attention: %r", type(model).__name__, error)
        run_pass = None
    if run_pass is None:
        model.set_attn_implementation("sdpa")
    return run_pass


@torch.inference_mode()
def _agrees_with_sdpa(model, run_pass) -> bool:
    """Two prompts of different lengths, one in two chunks, then a decode step of both as padded rows."""
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    prompts = [[(7 * index + 3) % vocab for index in range(length)] for length in (5, 9)]
    batch, prefills = KVBatch(device), [Prefill(prompt) for prompt in prompts]
    first = forward(run_pass, batch, [], [(prefills[0], 5), (prefills[1], 4)])
    second = forward(run_pass, batch, [], [(prefills[1], 5)])
    batch.join(prefills, [1, 1])
    steps = forward(run_pass, batch, [11, 13], [])
    expected = [model(input_ids=torch.tensor([prompt + [token]], device=device)).logits[0, -2:].float()
                for prompt, token in zip(prompts, (11, 13))]
    got = torch.stack([first[0], second[0], steps[0], steps[1]])
    want = torch.stack([expected[0][0], expected[1][0], expected[0][1], expected[1][1]])
    # Other shapes round differently: in bfloat16 (8 bits of mantissa) logits differ by up to ~4 % of their norm
    # after 30 layers, a wrong mask or position by far more.
    error = ((got - want).norm(dim=-1) / want.norm(dim=-1)).max()
    return bool(error <= max(1e-3, 20 * torch.finfo(model.dtype).eps))
