"""The key/value cache of a running batch: rows join after their own prefill and leave as soon as they finish.

Rows are left-padded to a common width. A joining row's cache is padded (or the batch is) on the left and
concatenated; leaving rows are dropped and padding columns nobody needs any more are trimmed. This is
TGI's concatenate/filter design applied to transformers' DynamicCache.
"""
import inspect
from functools import lru_cache

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .generation import left_pad


@lru_cache(maxsize=None)
def _takes_logits_to_keep(model_class) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _forward(model, **inputs) -> torch.Tensor:
    """Last-position logits only, as float32 (called under torch.inference_mode): the LM head over a whole
    prompt is a big share of a prefill."""
    if _takes_logits_to_keep(type(model)):
        inputs["logits_to_keep"] = 1
    return model(use_cache=True, **inputs).logits[:, -1, :].float()


def supports_continuous(model, device) -> bool:
    """Whether `model` can run continuous batching: its cache must be plain DynamicLayers (not sliding or
    quantised), which this module pads and concatenates."""
    prefill = Prefill([[model.config.bos_token_id or 0]], device=device)
    with torch.inference_mode():
        prefill.advance(model, 1)
    return all(type(layer) is DynamicLayer for layer in prefill.cache.layers)


class Prefill:
    """The forward passes of newly admitted prompts. Several short prompts run as one left-padded forward: on a
    CPU each forward pays for one read of all the weights, so prompts arriving together share it. A single
    prompt runs in chunks, so that running rows get a decode step between them."""

    def __init__(self, prompts: list, device=None):
        self.lengths = [len(prompt) for prompt in prompts]
        self.input_ids, self.mask = left_pad(prompts, 0, device)
        self.cache = DynamicCache()
        self.done_tokens = 0
        self.logits = None  # [prompts, vocab] once every prompt is in the cache

    @property
    def width(self) -> int:
        return self.input_ids.shape[1]

    @property
    def finished(self) -> bool:
        return self.logits is not None

    def advance(self, model, budget: int) -> int:
        """Run one chunk of at most `budget` tokens (a group of prompts: all at once); returns the tokens run."""
        if len(self.lengths) > 1:
            # Left padding: a row's positions count its own tokens only.
            positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
            self.logits = _forward(model, input_ids=self.input_ids, attention_mask=self.mask, position_ids=positions,
                                   past_key_values=self.cache)
            self.done_tokens = self.width
            return self.mask.numel()
        start = self.done_tokens
        end = min(self.width, start + max(1, budget))
        logits = _forward(model, input_ids=self.input_ids[:, start:end], past_key_values=self.cache,
                          position_ids=torch.arange(start, end, device=self.input_ids.device).unsqueeze(0))
        self.done_tokens = end
        if end == self.width:
            self.logits = logits
        return end - start


class KVBatch:
    """Cache, padding mask and positions of the running rows, in row order."""

    def __init__(self, model, device):
        self.model = model
        self.device = device
        self.cache = None
        self.mask = None  # [rows, width]: 1 where a cached column holds one of the row's tokens
        self.positions = None  # [rows]: tokens cached per row, the position of its next token

    def join(self, prefill: Prefill, copies: list):
        """Add `copies[i]` rows continuing prompt i of `prefill` (the n hypotheses of a sample share its prompt)."""
        index = torch.repeat_interleave(torch.arange(len(copies)), torch.tensor(copies)).to(self.device)
        keys = [layer.keys[index] for layer in prefill.cache.layers]
        values = [layer.values[index] for layer in prefill.cache.layers]
        mask = prefill.mask[index]
        positions = torch.tensor(prefill.lengths, dtype=torch.long, device=self.device)[index]
        if self.cache is None:
            self.cache = DynamicCache()
            for layer_index, (key, value) in enumerate(zip(keys, values)):
                self.cache.update(key, value, layer_index)
            self.mask, self.positions = mask, positions
            return
        width = max(self.mask.shape[1], prefill.width)
        grow, new = width - self.mask.shape[1], width - prefill.width
        for layer, key, value in zip(self.cache.layers, keys, values):
            layer.keys = torch.cat([_pad_left(layer.keys, grow), _pad_left(key, new)])
            layer.values = torch.cat([_pad_left(layer.values, grow), _pad_left(value, new)])
        self.mask = torch.cat([F.pad(self.mask, (grow, 0)), F.pad(mask, (new, 0))])
        self.positions = torch.cat([self.positions, positions])

    def keep(self, indices: list):
        """Keep only these rows, and drop leading columns that are padding in every kept row."""
        if not indices:
            self.cache = self.mask = self.positions = None
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.device)
        mask = self.mask[index]
        start = int(mask.any(dim=0).nonzero()[0])
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.mask = mask[:, start:]
        self.positions = self.positions[index]

    def step(self, tokens: list) -> torch.Tensor:
        """Feed each row its latest token; returns the next-token logits, [rows, vocab]."""
        mask = F.pad(self.mask, (0, 1), value=1)
        # Padding sits on the left only: a full first column means none, and the model's plain causal path is cheaper.
        padded = not bool(mask[:, 0].all())
        logits = _forward(self.model, input_ids=torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None],
                          attention_mask=mask if padded else None, position_ids=self.positions[:, None],
                          past_key_values=self.cache)
        self.mask = mask
        self.positions = self.positions + 1
        return logits


def _pad_left(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    """[rows, heads, width, dim] with `columns` zero columns in front."""
    return F.pad(tensor, (0, 0, columns, 0)) if columns else tensor
