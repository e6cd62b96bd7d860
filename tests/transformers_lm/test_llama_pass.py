"""llama_pass.py: a plain Llama's ragged passes computed as its own forward computes them, bit for bit, under each
precision; other models keep their own forward."""
from functools import partial

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from services.transformers_lm.engine import model_attention, ragged_attention
from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.kv_batch import KVBatch, Prefill
from services.transformers_lm.engine.llama_pass import LlamaPass
from services.transformers_lm.model.precision import PackedInt4Linear, quantize
from services.transformers_lm.model.source import LoadedModel
from tests.helpers.tiny_model import tiny_loaded, tiny_tokenizer
from tests.transformers_lm.test_lm_continuous import CONTEXTS, GREEDY, run, samples, service, solo

PRECISIONS = [(torch.float32, "none"), (torch.bfloat16, "none"), (torch.float32, "int8"), (torch.bfloat16, "int4")]


def passes(run_pass, prompts: list) -> list:
    """Logits of a pass sequence with every shape the engine makes: two prompts (the second in two chunks), their
    decode steps as padded rows, a third prompt's prefill riding along a decode step, then all three decoding."""
    batch, prefills = KVBatch(torch.device("cpu")), [Prefill(prompt) for prompt in prompts]
    logits = [ragged_attention.forward(run_pass, batch, [], [(prefills[0], len(prompts[0])), (prefills[1], 4)]),
              ragged_attention.forward(run_pass, batch, [], [(prefills[1], len(prompts[1]) - 4)])]
    batch.join(prefills[:2], [1, 1])
    logits.append(ragged_attention.forward(run_pass, batch, [5, 6], [(prefills[2], len(prompts[2]))]))
    batch.join(prefills[2:], [1])
    logits += [ragged_attention.forward(run_pass, batch, [7 + step, 8, 9], []) for step in range(3)]
    return logits


@pytest.mark.parametrize("dtype, quantization", PRECISIONS, ids=lambda value: str(value).removeprefix("torch."))
@torch.inference_mode()
def test_a_llamas_lean_passes_give_its_own_forwards_logits_bit_for_bit(dtype, quantization):
    model = tiny_loaded(dtype=dtype, quantization=quantization).model
    run_pass = model_attention.enable(model)
    assert type(run_pass) is LlamaPass
    assert_same_passes(model, run_pass)


@torch.inference_mode()
def test_joined_int4_query_key_and_value_give_the_own_forwards_logits_bit_for_bit():
    """Heads of 32 dimensions: q, k and v (128, 64, 64 rows, whole blocks of torch's packing on AVX2 and AVX512)
    join, and q and k are rotated in one go."""
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.5)
    torch.manual_seed(0)
    model = quantize(LlamaForCausalLM(config).to(torch.bfloat16).eval(), "int4")
    run_pass = model_attention.enable(model)
    assert run_pass.layers[0].qkv.packed is not None
    assert_same_passes(model, run_pass)


def assert_same_passes(model, run_pass):
    prompts = [[(11 * index + length) % 200 + 3 for index in range(length)] for length in (6, 11, 9)]
    lean, own = passes(run_pass, prompts), passes(partial(model_attention.own_pass, model), prompts)
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(lean, own))
    assert lean[-1].shape == (3, model.config.vocab_size)


@pytest.mark.parametrize("sizes, joins", [((128, 64, 64), True), ((64, 16), True), ((32, 16, 16), False)])
def test_int4_linears_that_read_one_input_run_as_one_kernel_call_with_their_own_results(sizes, joins):
    torch.manual_seed(0)
    model = torch.nn.Sequential(*(torch.nn.Linear(64, size, bias=False) for size in sizes)).to(torch.bfloat16)
    model.get_output_embeddings = lambda: None
    quantize(model, "int4")
    joined = PackedInt4Linear.joined(list(model))
    assert (joined is not None) is joins  # a part of 16 rows in the middle breaks torch's blocks
    if joins:
        x = torch.randn(5, 64, dtype=torch.bfloat16)
        assert torch.equal(joined(x), torch.cat([part(x) for part in model], dim=-1))
        assert joined.out_features == sum(sizes)


def test_another_architecture_keeps_its_own_forward_and_its_solo_answers():
    tokenizer = tiny_tokenizer()
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=None, initializer_range=0.5)
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    loaded = LoadedModel("tiny-mistral", model, tokenizer, torch.device("cpu"), 512)
    assert LlamaPass.of(model) is None
    engine = ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8)
    assert type(engine.run_pass) is partial and engine.run_pass.func is model_attention.own_pass
    assert run(service(loaded, engine), samples(service(loaded, engine), GREEDY)) == solo(loaded, GREEDY, CONTEXTS)


@pytest.mark.parametrize("probe", ["this-cpu", "rows-alone"])
@pytest.mark.parametrize("dtype, quantization", [(torch.bfloat16, "none"), (torch.bfloat16, "int4")],
                         ids=["bfloat16", "int4"])
@torch.inference_mode()
def test_a_padded_rows_decode_step_gives_it_the_bits_it_gets_alone(dtype, quantization, probe, monkeypatch):
    """Where SDPA's bits for a row depend on its padding (ragged_attention.padding_keeps_bits says no: an AVX512
    Xeon), rows attend alone; "rows-alone" takes that path on any CPU. (float32's Linears are no such precision
    on that Xeon: MKL's sgemm gives a row other bits at 2 rows than at 1.)"""
    if probe == "rows-alone":
        monkeypatch.setattr(ragged_attention, "padding_keeps_bits", lambda *shape: False)
    run_pass = model_attention.enable(tiny_loaded(dtype=dtype, quantization=quantization).model)
    prompts = [[(5 * index + length) % 200 + 3 for index in range(length)] for length in (30, 14, 14, *range(2, 30, 3))]

    def step(rows: list) -> torch.Tensor:
        batch, prefills = KVBatch(torch.device("cpu")), [Prefill(prompts[row]) for row in rows]
        ragged_attention.forward(run_pass, batch, [], [(prefill, len(prefill.tokens)) for prefill in prefills])
        batch.join(prefills, [1] * len(rows))
        return ragged_attention.forward(run_pass, batch, [11] * len(rows), [])

    together = step(range(len(prompts)))  # rows of 31 columns, of 15 (a run of two), of 3, 6, ... 30
    assert all(torch.equal(together[row], step([row])[0]) for row in range(len(prompts)))
