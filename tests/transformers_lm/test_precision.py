"""DTYPE and QUANTIZE: how the dtype is chosen per machine, and every engine path giving, under each precision,
what solo generate() gives in the same precision, token for token."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from services.transformers_lm.engine import ragged_attention
from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.kv_batch import KVBatch, Prefill
from services.transformers_lm.engine.model_attention import enable
from services.transformers_lm.engine.static import BatchEngine
from services.transformers_lm.model.gguf import WEIGHTS_FILE, layer_bits
from services.transformers_lm.model.precision import (Int8Linear, OnednnLinear, PackedInt4Linear, Precision,
                                                      attention_dtype, choose_dtype, choose_quantize, cpu_flags,
                                                      head_quantize, int4_kernel, keeps_float, onednn_linears,
                                                      quantize, sdpa_attention)
from services.transformers_lm.model.source import resolve_source
from services.transformers_lm.service import LMService, Task
from services.transformers_lm.settings import Settings
from tests.helpers.tiny_model import tiny_loaded

CPU, GPU = torch.device("cpu"), torch.device("cuda")
GREEDY = {"do_sample": False, "max_new_tokens": 12, "min_new_tokens": 12, "num_return_sequences": 1}
CONTEXTS = [["Hello there"], ["What is the capital of France?"], ["a", "b", "c"], ["Tell me a long story " * 3]]
PRECISIONS = [(torch.float32, "none"), (torch.bfloat16, "none"), (torch.float32, "int8"), (torch.bfloat16, "int8"),
              (torch.bfloat16, "int4")]


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),
    ({"avx2", "amx_bf16", "amx_tile"}, torch.bfloat16),
    ({"avx2", "avx512f", "avx512_vnni"}, torch.float32),  # bf16 emulated: slower than float32 when batching
    (frozenset(), torch.float32),
])
def test_auto_takes_bfloat16_only_where_the_cpu_computes_it(flags, expected):
    assert choose_dtype("auto", CPU, half_precision=False, flags=frozenset(flags)) is expected
    assert choose_dtype("auto", CPU, half_precision=True, flags=frozenset(flags)) is expected  # a GPU setting


def test_an_explicit_dtype_wins_over_the_cpu():
    assert choose_dtype("float32", CPU, False, frozenset({"avx512_bf16"})) is torch.float32
    assert choose_dtype("bfloat16", CPU, False, frozenset()) is torch.bfloat16


def test_this_machines_flags_are_read(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_auto_runs_a_four_bit_gguf_in_int4_on_a_cpu_and_wider_weights_as_they_came():
    assert int4_kernel()  # this torch (2.13 CPU) has it; without it auto would fall back to none
    assert choose_quantize("auto", CPU, 4) == "int4"
    assert choose_quantize("auto", CPU, 2) == "int4"
    assert choose_quantize("auto", CPU, 8) == "none"  # a Q8_0 file would lose precision in int4
    assert choose_quantize("auto", CPU, None) == "none"  # float weights (a hub model, a folder)
    assert choose_quantize("auto", GPU, 4) == "none"
    assert choose_quantize("int8", CPU, 4) == "int8" and choose_quantize("none", CPU, 4) == "none"
    with pytest.raises(ValueError, match="QUANTIZE=int4"):
        choose_quantize("int4", GPU, None)


def test_int4_runs_on_bfloat16_activations_unless_dtype_says_otherwise():
    for flags in (frozenset(), frozenset({"avx512_bf16"})):
        assert choose_dtype("auto", CPU, False, flags, quantization="int4") is torch.bfloat16
    assert choose_dtype("float32", CPU, False, frozenset(), quantization="int4") is torch.float32


def test_the_embedded_models_conversion_records_its_four_bit_layers(tmp_path):
    folder = resolve_source(Settings.from_env({}))[1]
    assert layer_bits(folder) == 4  # Q4_1 in every layer; its token embeddings are Q8_0
    assert layer_bits(str(tmp_path)) is None
    (tmp_path / WEIGHTS_FILE).write_text('{"layer_types": ["Q8_0"], "layer_bits": 8}')
    assert layer_bits(str(tmp_path)) == 8


@pytest.mark.parametrize("value, field", [("DTYPE", "int4"), ("QUANTIZE", "int3")])
def test_unknown_precisions_stop_the_start_naming_the_variable(value, field):
    with pytest.raises(ValueError, match=value):
        Settings.from_env({value: field})


@pytest.mark.parametrize("dtype, quantization", [(torch.float32, "int8"), (torch.bfloat16, "int4")])
def test_the_output_head_stays_float_or_gets_int8_of_its_own(dtype, quantization):
    model = tiny_loaded(dtype=dtype, quantization=quantization).model
    head = model.lm_head
    if quantization == "int4" and head_quantize("int4", dtype, CPU) == "int8":
        assert type(head) is Int8Linear and head.qdata.dtype == torch.int8 and head.scale.dtype == dtype
    elif quantization == "int4":  # a CPU with AMX: the head in bf16, prepacked for oneDNN
        assert type(head) is OnednnLinear
    else:
        assert type(model.lm_head.weight) is torch.nn.Parameter and model.lm_head.weight.dtype == dtype
    assert type(model.model.layers[0].self_attn.q_proj.weight).__name__ != "Parameter"  # torchao's tensor
    assert keeps_float("lm_head", model) and not keeps_float("model.layers.0.mlp.up_proj", model)


def test_a_tied_heads_int8_is_its_own_and_close_to_the_embeddings():
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    embeddings = model.model.embed_tokens.weight.detach().clone()
    quantize(model, "int4", head="int8")
    assert type(model.lm_head) is Int8Linear
    assert type(model.model.embed_tokens.weight) is torch.nn.Parameter  # still float, and the same bits
    assert torch.equal(model.model.embed_tokens.weight, embeddings)
    hidden = torch.randn(2, 3, 64).to(torch.bfloat16)
    floats = torch.nn.functional.linear(hidden.float(), embeddings.float())
    assert (model.lm_head(hidden).float() - floats).abs().max() < 0.02 * floats.abs().max()
    assert model.lm_head(hidden[:, :0]).shape == (2, 0, 256)  # a pass that keeps no token


def test_the_head_gets_int8_of_its_own_under_int4_but_where_it_runs_as_an_onednn_linear():
    assert head_quantize("int4", torch.float32, CPU) == "int8" and head_quantize("int8", torch.bfloat16, CPU) == "none"
    assert head_quantize("int4", torch.bfloat16, CPU) == ("none" if onednn_linears(torch.bfloat16, CPU) else "int8")
    assert head_quantize("none", torch.bfloat16, CPU) == "none"


ONEDNN = pytest.mark.skipif(not onednn_linears(torch.bfloat16, CPU), reason="oneDNN's bf16 Linears: a CPU with AMX")


def test_onednn_linears_are_for_bfloat16_on_a_cpu_with_amx():
    amx = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert onednn_linears(torch.bfloat16, CPU, frozenset(amx)) == native
    assert not onednn_linears(torch.bfloat16, CPU, frozenset({"avx2", "avx512_bf16"}))  # measured only with AMX
    assert not onednn_linears(torch.float32, CPU, frozenset(amx)) and not onednn_linears(torch.bfloat16, GPU,
                                                                                       frozenset(amx))


@ONEDNN
@torch.inference_mode()
def test_an_onednn_linear_gives_each_row_the_bits_it_has_alone_however_many_rows_share_the_call():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 3000).to(torch.bfloat16)  # F.linear's rows changed from 33 on at such a width
    onednn = OnednnLinear(linear.weight, linear.bias)
    rows = torch.randn(80, 64).to(torch.bfloat16)
    together = onednn(rows)
    assert torch.equal(onednn(rows[:1]), linear(rows[:1]))
    assert all(torch.equal(together[row:row + 1], onednn(rows[row:row + 1])) for row in range(80))
    assert onednn(rows.view(8, 10, 64)).shape == (8, 10, 3000)


@ONEDNN
def test_a_bfloat16_model_runs_its_float_linears_but_int8s_as_onednn_linears():
    model = quantize(tiny_loaded().model.to(torch.bfloat16), "int8")
    assert type(model.lm_head) is OnednnLinear  # the head int8 leaves in float
    assert type(model.model.layers[0].mlp.up_proj) is torch.nn.Linear  # torchao's int8 tensor
    assert type(quantize(tiny_loaded().model, "none").lm_head) is torch.nn.Linear  # float32


def test_bfloat16_attends_in_float32_on_a_cpu_without_amx():
    assert attention_dtype(torch.bfloat16, CPU, frozenset({"avx2", "avx512_bf16"})) == torch.float32
    assert attention_dtype(torch.bfloat16, CPU, frozenset({"avx2"})) == torch.float32
    assert attention_dtype(torch.bfloat16, CPU, frozenset({"avx512_bf16", "amx_bf16"})) == torch.bfloat16
    assert attention_dtype(torch.float32, CPU, frozenset()) == torch.float32
    assert attention_dtype(torch.bfloat16, GPU, frozenset()) == torch.bfloat16


@torch.inference_mode()
def test_generate_and_the_ragged_passes_attend_in_the_attention_dtype_and_cache_in_it():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    loaded = tiny_loaded(dtype=torch.bfloat16, quantization="none")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa_attention  # what generate() and the static engine run
    batch, prefill = KVBatch(CPU), Prefill([5, 6, 7, 8])
    logits = ragged_attention.forward(enable(loaded.model), batch, [], [(prefill, 4)])
    wanted = attention_dtype(torch.bfloat16, CPU)
    assert {keys.dtype for keys in prefill.keys + prefill.values} == {wanted}
    expected = loaded.model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits[0, -1].float()
    assert torch.equal(logits[0], expected)  # the model's own forward attends as the pass does


def test_int8_linear_runs_a_weight_stored_off_its_kernels_alignment():
    # a stored head is memory-mapped from safetensors at an offset of 8 bytes mod 64: the AVX512 kernel segfaulted
    torch.manual_seed(0)
    weights = torch.randint(-127, 128, (256 * 64 + 8,), dtype=torch.int8)
    qdata, scale = weights[8:].view(256, 64), torch.rand(256).to(torch.bfloat16) / 64
    assert qdata.data_ptr() % 16
    head = Int8Linear(qdata, scale)
    assert head.qdata.data_ptr() % 16 == 0 and torch.equal(head.qdata, qdata)
    for rows in (1, 4, 16):
        hidden = torch.randn(rows, 64).to(torch.bfloat16)
        floats = hidden.float() @ qdata.float().t() * scale.float()
        assert (head(hidden).float() - floats).abs().max() <= 0.01 * floats.abs().max()


def test_packed_int4_linear_computes_what_torchaos_int4_tensor_computes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.Linear(48, 96, bias=False)).to(torch.bfloat16)
    model.get_output_embeddings = lambda: None
    x = torch.randn(3, 5, 64, dtype=torch.bfloat16)
    float_out = model(x)
    quantize(model, "int4")
    assert isinstance(model[0], PackedInt4Linear) and not isinstance(model[1], PackedInt4Linear)  # 48 % 32 != 0
    packed = model[0]
    torchaos = torch.nn.functional.linear(x, packed.weight, packed.bias)  # through torchao's tensor subclass
    assert torch.equal(packed(x), torchaos)
    error = (model(x).float() - float_out.float()).norm() / float_out.float().norm()
    assert 0 < error < 0.1  # 4-bit rounding, not another function


@pytest.fixture(scope="module", params=PRECISIONS, ids=lambda p: f"{str(p[0])[6:]}-{p[1]}")
def loaded(request):
    return tiny_loaded(dtype=request.param[0], quantization=request.param[1])


def replies(loaded, engine, contexts=CONTEXTS):
    service = LMService(Settings(), loaded, engine=engine)
    samples = [service.sample(Task("Be brief.", context, GREEDY), service.defaults, "c") for context in contexts]
    return [future.result(60) for future in service.engine.submit(samples)]


def test_continuous_batching_equals_solo_generate_token_for_token(loaded):
    engine = ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8)
    solo = [replies(loaded, BatchEngine(loaded, max_batch_rows=1, batch_wait_s=0), [context])[0]
            for context in CONTEXTS]
    assert replies(loaded, engine) == solo
    assert engine.stats["steps"] < sum(hypotheses[0].tokens for hypotheses in solo)  # rows shared steps
    assert loaded.precision == Precision(loaded.model.dtype, loaded.precision.quantize)
