"""The key/value caches of continuous batching, kept by the engine rather than in a transformers Cache:
each new prompt's cache while its prefill runs, and the running rows' cache.

Running rows are left-padded to a common width. A joining row's cache is padded (or the batch's is) on the
left and concatenated; leaving rows are dropped and padding columns nobody needs any more are trimmed. This
is TGI's concatenate/filter design. Tensors are [rows, kv_heads, width, head_dim], one pair per layer.
"""
import torch
import torch.nn.functional as F


def _extend(cache: list, layer: int, new: torch.Tensor) -> torch.Tensor:
    """Append `new` columns to layer `layer` of `cache` (a list that grows one entry per layer on the first pass)."""
    if layer == len(cache):
        cache.append(new)
    else:
        cache[layer] = torch.cat([cache[layer], new], dim=2)
    return cache[layer]


class Prefill:
    """One prompt on its way into the cache, a chunk per forward pass."""

    def __init__(self, tokens: list):
        self.tokens = tokens
        self.done = 0  # tokens already in the cache
        self.keys, self.values = [], []

    @property
    def remaining(self) -> int:
        return len(self.tokens) - self.done

    def extend(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple:
        return _extend(self.keys, layer, key), _extend(self.values, layer, value)


class KVBatch:
    """Cache, padding mask and positions of the running rows, in row order."""

    def __init__(self, device):
        self.device = device
        self.keys, self.values = [], []
        self.mask = None  # [rows, width] bool: True where a cached column holds one of the row's tokens
        self.positions = None  # [rows]: tokens cached per row, the position of its next token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def extend(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple:
        """Append one column per row (this pass's token) to a layer; returns the layer's keys and values."""
        return _extend(self.keys, layer, key), _extend(self.values, layer, value)

    def advance(self):
        """After a pass has extended every layer: the new column is each row's own token."""
        self.mask = F.pad(self.mask, (0, 1), value=True)
        self.positions = self.positions + 1

    def join(self, prefills: list, copies: list):
        """Add `copies[i]` rows continuing prompt `prefills[i]` (the n hypotheses of a sample share its prompt)."""
        sources = [prefill for prefill, count in zip(prefills, copies) for _ in range(count)]
        if not sources:
            return
        running = self.rows > 0
        parts = ([self] if running else []) + sources
        width = max(part.keys[0].shape[2] for part in parts)
        layers = range(len(sources[0].keys))
        self.keys = [torch.cat([_pad_left(part.keys[layer], width) for part in parts]) for layer in layers]
        self.values = [torch.cat([_pad_left(part.values[layer], width) for part in parts]) for layer in layers]
        masks = ([self.mask] if running else []) + [torch.ones(1, prefill.done, dtype=torch.bool, device=self.device)
                                                      for prefill in sources]
        self.mask = torch.cat([F.pad(mask, (width - mask.shape[1], 0), value=False) for mask in masks])
        positions = torch.tensor([prefill.done for prefill in sources], dtype=torch.long, device=self.device)
        self.positions = torch.cat([self.positions, positions]) if running else positions

    def keep(self, indices: list):
        """Keep only these rows, and drop leading columns that are padding in every kept row."""
        if not indices:
            self.keys, self.values, self.mask, self.positions = [], [], None, None
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.device)
        mask = self.mask[index]
        start = int(mask.any(dim=0).nonzero()[0])
        self.keys = [keys[index, :, start:] for keys in self.keys]
        self.values = [values[index, :, start:] for values in self.values]
        self.mask = mask[:, start:]
        self.positions = self.positions[index]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, heads, w, dim] with zero columns in front, to `width`."""
    missing = width - tensor.shape[2]
    return F.pad(tensor, (0, 0, missing, 0)) if missing else tensor

