"""The prefix cache on tensors shaped like a model's cache (which entry a prompt reuses, and what stays), and on a
model: a prompt's bits whatever was cached."""
import pytest
import torch

from services.transformers_lm.engine import model_attention, ragged_attention
from services.transformers_lm.engine.continuous import prompt_chunk
from services.transformers_lm.engine.kv_batch import KVBatch, Prefill
from services.transformers_lm.engine.prefix_cache import PrefixCache
from tests.helpers.tiny_model import tiny_loaded

LAYERS, HEADS, DIM = 2, 2, 4
TOKEN_BYTES = 2 * LAYERS * HEADS * DIM * 4  # keys and values, float32


def finished(tokens: list) -> Prefill:
    """A prompt whose cache is in: column i of every layer holds tokens[i], so a test can read what was reused."""
    prefill = Prefill(tokens)
    column = torch.tensor(tokens, dtype=torch.float32)[None, None, :, None].expand(1, HEADS, len(tokens), DIM)
    prefill.keys = [column + layer for layer in range(LAYERS)]
    prefill.values = [-column - layer for layer in range(LAYERS)]
    prefill.done = len(tokens)
    return prefill


def reused(prefill: Prefill) -> list:
    assert all(layer.shape[2] == prefill.done for layer in prefill.keys + prefill.values)
    return prefill.keys[0][0, 0, :, 0].long().tolist()


def test_a_prompt_reuses_the_longest_shared_prefix_of_any_stored_prompt():
    cache = PrefixCache(1 << 20, block=1)
    cache.store(finished([1, 2, 3, 4, 5]))
    cache.store(finished([1, 2, 9, 9]))
    prefill = cache.prefill([1, 2, 3, 4, 7, 8])
    assert prefill.done == 4 and reused(prefill) == [1, 2, 3, 4]
    assert prefill.remaining == 2 and prefill.values[1][0, 0, :, 0].tolist() == [-2, -3, -4, -5]
    assert cache.prefill([5, 1, 2]).done == 0


def test_the_last_prompt_token_is_always_computed():
    cache = PrefixCache(1 << 20, block=1)
    cache.store(finished([1, 2, 3, 4]))
    assert cache.prefill([1, 2, 3, 4]).done == 3  # its logits pick the first new token
    assert cache.prefill([1, 2]).done == 1
    assert cache.prefill([1]).done == 0


def test_reusing_never_changes_the_stored_entry():
    cache = PrefixCache(1 << 20, block=1)
    cache.store(finished([1, 2, 3, 4]))
    prefill = cache.prefill([1, 2, 3, 8])
    prefill.extend(0, torch.zeros(1, HEADS, 1, DIM), torch.zeros(1, HEADS, 1, DIM))
    assert reused(cache.prefill([1, 2, 3, 4, 5])) == [1, 2, 3, 4]


def test_a_prompt_that_extends_a_stored_one_replaces_it_and_a_covered_one_adds_nothing():
    cache = PrefixCache(1 << 20, block=1)
    cache.store(finished([1, 2, 3]))
    cache.store(finished([1, 2, 3, 4, 5]))  # the next turn of the same dialog
    assert list(cache.entries) == [(1, 2, 3, 4, 5)]
    cache.store(finished([1, 2]))
    assert list(cache.entries) == [(1, 2, 3, 4, 5)] and cache.bytes == 5 * TOKEN_BYTES


def test_the_least_recently_used_prompts_leave_when_the_budget_is_spent():
    cache = PrefixCache(8 * TOKEN_BYTES, block=1)
    cache.store(finished([1, 1, 1]))
    cache.store(finished([2, 2, 2]))
    cache.prefill([1, 1, 1, 5])  # a hit makes [1, 1, 1] the most recently used
    cache.store(finished([3, 3, 3, 3]))
    assert list(cache.entries) == [(1, 1, 1), (3, 3, 3, 3)] and cache.bytes == 7 * TOKEN_BYTES
    cache.store(finished(list(range(9))))  # over the whole budget: not kept, nothing evicted for it
    assert list(cache.entries) == [(1, 1, 1), (3, 3, 3, 3)]


def test_a_zero_budget_keeps_nothing():
    cache = PrefixCache(0, block=1)
    cache.store(finished([1, 2, 3]))
    assert not cache.entries and cache.prefill([1, 2, 3, 4]).done == 0


def test_prefixes_are_reused_in_whole_blocks():
    cache = PrefixCache(1 << 20, block=4)
    cache.store(finished(list(range(1, 11))))
    assert cache.prefill(list(range(1, 10)) + [99]).done == 8  # 9 shared
    assert cache.prefill(list(range(1, 11))).done == 8  # the last token is computed: 9, cut to 8
    assert cache.prefill([1, 2, 3, 9]).done == 0


def prompt_pass(run_pass, cache: PrefixCache, tokens: list, budget: int) -> tuple:
    """The last pass's logits and the cache of `tokens` computed as the engine does: what `cache` holds reused,
    the rest in passes of `budget` prompt tokens."""
    prefill = cache.prefill(tokens)
    while prefill.remaining:
        length = prompt_chunk(prefill, budget, first=True)
        logits = ragged_attention.forward(run_pass, KVBatch(torch.device("cpu")), [], [(prefill, length)])
    cache.store(prefill)
    return logits, prefill.keys + prefill.values


def linear_keeps_rows(dtype: torch.dtype) -> bool:
    """Does F.linear give each row the bits it has alone, however many rows share the call? MKL's float32 sgemm
    on an AVX512 EPYC does not (rows differ for 1, 2, 3 and most counts that are no multiple of 4): there a float32
    model's prompt can answer otherwise when its prefill is cut otherwise, whatever attention does."""
    generator = torch.Generator().manual_seed(0)
    weight, rows = (torch.randn(*shape, generator=generator).to(dtype) for shape in ((96, 64), (40, 64)))
    together = torch.nn.functional.linear(rows, weight)
    return all(torch.equal(torch.nn.functional.linear(rows[:count], weight), together[:count])
               for count in range(1, len(rows) + 1))


@pytest.mark.parametrize("dtype, quantization", [
    pytest.param(torch.float32, "none", id="float32", marks=pytest.mark.skipif(
        not linear_keeps_rows(torch.float32), reason="this CPU's float32 F.linear rounds a row by its call's rows")),
    pytest.param(torch.bfloat16, "int4", id="int4")])
@torch.inference_mode()
def test_a_prompt_gets_the_same_bits_whatever_was_cached_and_however_its_passes_were_cut(dtype, quantization):
    """SDPA's bits depend on a call's lengths on some CPUs (an AVX512 Xeon: 15 prompt lengths in 16, float32 too),
    which had a repeated request answer otherwise than its first time. Attention in fixed blocks keeps them."""
    run_pass = model_attention.enable(tiny_loaded(dtype=dtype, quantization=quantization).model)
    prompt = [(7 * index) % 200 + 3 for index in range(70)]
    alone, alone_cache = prompt_pass(run_pass, PrefixCache(0), prompt, 1024)
    warm = PrefixCache(1 << 24)
    prompt_pass(run_pass, warm, prompt[:37] + [1, 2, 3], 1024)  # shares 37 tokens: 32 are reused
    for cache, budget in ((PrefixCache(0), 20), (PrefixCache(0), 5), (warm, 1024), (warm, 1024)):  # then all 64
        logits, keys_and_values = prompt_pass(run_pass, cache, prompt, budget)
        assert torch.equal(logits, alone)
        assert all(torch.equal(mine, theirs) for mine, theirs in zip(keys_and_values, alone_cache))
    assert warm.prefill(prompt).done == 64
