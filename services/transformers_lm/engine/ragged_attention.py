"""One forward pass over rows of different lengths: the running rows' next tokens plus chunks of new prompts.

On a CPU every forward pass pays for reading all the weights, so a new prompt's prefill rides along with the
running rows' decode step instead of taking a pass of its own (2 cores, SmolLM2-135M: a decode step of 8 rows
90 ms, a 34-token prefill 115 ms, both in one pass 141 ms). All tokens go through the model's layers as one flat
sequence; only attention is per row: the running rows attend over their left-padded cache in one batched call
(or, where SDPA's bits for a row would depend on its padding, each row alone over its own columns), each prompt
chunk over its own earlier chunks, causally.

A plain Llama runs llama_pass.py (its maths with less Python around it); any other model runs its own forward
with this attention inside (model_attention.py). This module imports no transformers code: a pass built from
stored weights alone runs without it.
"""
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..model.precision import attention_dtype
from .kv_batch import KVBatch

# Prompt tokens per attention call. SDPA's bits can depend on the lengths of the call (on an AVX512 Xeon 15 of
# every 16 prompt lengths gave a token's attention other bits than the full prompt did, float32 too), so a
# prompt is attended in the same calls whatever was cached or shared its passes: one per block of BLOCK tokens
# at fixed positions. The prefix cache reuses whole blocks and a pass cuts a prompt at a block's end; a prompt's
# answer is then the same whatever ran before or beside it.
BLOCK = 16


def _blocks(position: int, end: int) -> list:
    """The attention calls of prompt tokens position..end-1: (start, end) of each block they reach into."""
    bounds = [position, *range(position - position % BLOCK + BLOCK, end, BLOCK), end]
    return list(zip(bounds, bounds[1:]))


@lru_cache(maxsize=None)
def padding_keeps_bits(heads: int, kv_heads: int, dim: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Does SDPA give a row of a padded, masked batch of one-query rows the bits it gives the row alone over its
    own columns? On an AVX512 Xeon 13 of these 43 lengths differed in bfloat16, 38 in float32 (the padding shifts
    the keys across its kernel's vector lanes), and a greedy reply changed with the load; on the AVX2 EPYC batched
    rows kept solo generate()'s replies. Checked once a shape."""
    generator = torch.Generator().manual_seed(0)
    lengths = [*range(1, 41), 300, 520, 700]
    width = max(lengths)
    query = torch.randn(len(lengths), heads, 1, dim, generator=generator).to(device, dtype)
    keys, values = (torch.randn(len(lengths), kv_heads, width, dim, generator=generator).to(device, dtype)
                    for _ in range(2))
    mask = torch.arange(width) >= width - torch.tensor(lengths)[:, None]
    batched = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask[:, None, None].to(device),
                                             enable_gqa=True)
    return all(torch.equal(batched[row:row + 1], F.scaled_dot_product_attention(
        query[row:row + 1], keys[row:row + 1, :, width - length:], values[row:row + 1, :, width - length:],
        enable_gqa=True)) for row, length in enumerate(lengths))


class RaggedPass:
    """What one forward pass holds: `rows` running rows (one token each, first) then prompt chunks."""

    def __init__(self, batch: KVBatch, rows: int, chunks: list):
        self.batch = batch
        self.rows = rows
        self.row_mask = None  # None when no running row is padded: SDPA's unmasked path is cheaper
        self.row_runs = []  # (first row, end, columns) of consecutive rows of one length: the calls rows alone take
        if rows and not bool(batch.mask[:, 0].all()):
            self.row_mask = F.pad(batch.mask, (0, 1), value=True)[:, None, None, :]
            for row, length in enumerate((batch.mask.sum(1) + 1).tolist()):
                if self.row_runs and self.row_runs[-1][2] == length:
                    self.row_runs[-1][1] = row + 1
                else:
                    self.row_runs.append([row, row + 1, length])
        # (Prefill, its first token's index in the pass, tokens, mask) of each attention call of the chunks: a
        # block after a prompt's first sees all of its earlier tokens and its own causally.
        self.blocks, index = [], rows
        for prefill, length in chunks:
            for start, end in _blocks(prefill.done, prefill.done + length):
                mask = None if start == 0 else torch.ones(end - start, end, dtype=torch.bool,
                                                          device=batch.device).tril(start)
                self.blocks.append((prefill, index, end - start, mask))
                index += end - start

    def attend(self, layer: int, query, key, value, scale) -> torch.Tensor:
        """query [1, heads, tokens, dim], key/value [1, kv_heads, tokens, dim] -> [1, tokens, heads, dim], computed
        (and cached) in the attention dtype, returned in the query's."""
        dtype = query.dtype
        query, key, value = (tensor.to(attention_dtype(dtype, query.device)) for tensor in (query, key, value))
        outputs = []
        if self.rows:  # each row a batch entry of one query: [rows, heads, 1, dim] views, one op each
            row_query, row_key, row_value = (tensor.narrow(2, 0, self.rows).permute(2, 1, 0, 3)
                                             for tensor in (query, key, value))
            keys, values = self.batch.extend(layer, row_key, row_value)
            if self.row_mask is None or padding_keeps_bits(query.shape[1], key.shape[1], query.shape[-1],
                                                           query.dtype, query.device):
                output = F.scaled_dot_product_attention(row_query, keys, values, attn_mask=self.row_mask,
                                                        scale=scale, enable_gqa=True)
            else:  # each run of rows over its own columns only, as the rows would attend alone
                width = keys.shape[2]
                output = torch.cat([F.scaled_dot_product_attention(
                    row_query[start:end], keys[start:end, :, width - length:], values[start:end, :, width - length:],
                    scale=scale, enable_gqa=True) for start, end, length in self.row_runs])
            outputs.append(output.permute(2, 0, 1, 3))
        for prefill, start, length, mask in self.blocks:
            end = start + length
            keys, values = prefill.extend(layer, key[:, :, start:end], value[:, :, start:end])
            output = F.scaled_dot_product_attention(query[:, :, start:end], keys, values, attn_mask=mask,
                                                    is_causal=mask is None, scale=scale, enable_gqa=True)
            outputs.append(output.transpose(1, 2))
        return (torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]).to(dtype)


def forward(run_pass, batch: KVBatch, tokens: list, chunks: list) -> torch.Tensor:
    """Run one pass through `run_pass` (what continuous.pass_of returned): `tokens[i]` continues running row i;
    `chunks` are (Prefill, length) pairs. Extends the caches and returns float32 logits for each row, then for each
    prompt that this pass completes."""
    device = batch.device
    ids, positions, keep = list(tokens), [], list(range(len(tokens)))
    for prefill, length in chunks:
        ids += prefill.tokens[prefill.done:prefill.done + length]
        positions += range(prefill.done, prefill.done + length)
        if length == prefill.remaining:
            keep.append(len(ids) - 1)
    position_ids = torch.tensor(positions, dtype=torch.long, device=device)
    if tokens:
        position_ids = torch.cat([batch.positions, position_ids])
    plan = RaggedPass(batch, len(tokens), chunks)
    logits = run_pass(torch.tensor([ids], dtype=torch.long, device=device), position_ids[None], plan,
                      torch.tensor(keep, dtype=torch.long, device=device))
    if tokens:
        batch.advance()
    for prefill, length in chunks:
        prefill.done += length
    return logits.float()
