"""model/packed.py: a GGUF conversion's int4 model stored once computes, loaded back, what it computed packed afresh;
a stored plain Llama's pass runs from its weights alone (no transformers model) with the model's logits."""
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig, MistralForCausalLM

from services.transformers_lm.engine import model_attention
from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.llama_pass import LlamaPass
from services.transformers_lm.model.gguf import WEIGHTS_FILE
from services.transformers_lm.model.loading import load_model
from services.transformers_lm.model.packed import (LLAMA_LINEARS, is_stored, load_packed, packed_folder,
                                                   quantize_and_store, read_stored)
from services.transformers_lm.model.precision import Int8Linear, OnednnLinear, PackedInt4Linear, head_quantize
from services.transformers_lm.settings import Settings
from tests.helpers.tiny_model import tiny_model, tiny_tokenizer
from tests.transformers_lm.test_llama_pass import assert_same_passes
from tests.transformers_lm.test_lm_continuous import GREEDY, run, samples, service, solo
from tests.transformers_lm.test_precision import ONEDNN


# The int4 model's head: per-channel int8, or on a CPU with AMX bf16 prepacked for oneDNN
HEAD = Int8Linear if head_quantize("int4", torch.bfloat16, torch.device("cpu")) == "int8" else OnednnLinear


def as_converted(model, folder) -> str:
    """`folder` as model/gguf.py leaves it: a model, its tokenizer and the GGUF's weight types."""
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    (folder / WEIGHTS_FILE).write_text(json.dumps({"layer_types": ["Q4_1"], "layer_bits": 4}))
    return str(folder)


@pytest.fixture
def conversion(tmp_path):
    return as_converted(tiny_model(vocab_size=len(tiny_tokenizer())), tmp_path)


def stored(conversion: str) -> str:
    folder = packed_folder(conversion, torch.bfloat16, "int4", None)
    quantize_and_store(AutoModelForCausalLM.from_pretrained(conversion, dtype=torch.bfloat16).eval(), folder)
    return folder


def test_only_an_int4_gguf_conversion_without_an_adapter_is_stored(conversion, tmp_path_factory):
    folder = packed_folder(conversion, torch.bfloat16, "int4", None)
    assert folder.startswith(conversion) and "bfloat16" in folder and torch.__version__ in folder
    assert packed_folder(conversion, torch.bfloat16, "int4", "some/adapter") is None
    assert packed_folder(conversion, torch.float32, "int8", None) is None
    assert packed_folder(str(tmp_path_factory.mktemp("hub-folder")), torch.bfloat16, "int4", None) is None


@torch.inference_mode()
def test_the_stored_int4_model_gives_the_freshly_packed_ones_logits_bit_for_bit(conversion):
    folder = packed_folder(conversion, torch.bfloat16, "int4", None)
    def loaded():  # as model/loading.py loads it (.to(bfloat16) would turn the rotary frequencies to bfloat16 too)
        return AutoModelForCausalLM.from_pretrained(conversion, dtype=torch.bfloat16).eval()

    fresh = quantize_and_store(loaded(), folder)
    assert is_stored(folder)
    stored = load_packed(folder, {"dtype": torch.bfloat16})
    layer = stored.model.layers[1].mlp
    assert type(layer.up_proj) is PackedInt4Linear and not hasattr(layer.up_proj, "weight")  # no float copy
    assert type(stored.lm_head) is type(fresh.lm_head) is HEAD
    if HEAD is Int8Linear:
        assert torch.equal(stored.lm_head.qdata, fresh.lm_head.qdata)
    ids = torch.tensor([[5, 9, 3, 17, 42, 8]])
    assert torch.equal(stored(ids).logits, fresh(ids).logits)
    again = quantize_and_store(loaded(), folder)  # a second worker that packed meanwhile: its rename fails
    assert type(again.model.layers[0].mlp.up_proj) is PackedInt4Linear and is_stored(folder)
    assert not [path for path in os.listdir(conversion) if path.startswith(".partial")]


def test_a_float_copy_that_fails_to_write_stores_nothing_and_the_model_is_still_packed(conversion):
    folder = packed_folder(conversion, torch.bfloat16, "int4", None)
    model = AutoModelForCausalLM.from_pretrained(conversion, dtype=torch.bfloat16).eval()

    def disk_full(path, **kwargs):
        open(os.path.join(path, "model.safetensors"), "wb").write(b"half")
        raise OSError(28, "No space left on device")

    model.save_pretrained = disk_full
    packed = quantize_and_store(model, folder)
    assert type(packed.model.layers[0].mlp.up_proj) is PackedInt4Linear
    assert not is_stored(folder) and not os.path.exists(folder)
    assert not [path for path in os.listdir(conversion) if path.startswith(".partial")]


@pytest.mark.parametrize("tied", [False, True], ids=["own-head", "tied-head"])
@torch.inference_mode()
def test_a_stored_llamas_pass_from_its_weights_alone_gives_the_models_logits_bit_for_bit(tmp_path, tied):
    model = tiny_model(vocab_size=len(tiny_tokenizer()))
    if tied:  # SmolLM2's head is its embeddings
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    folder = stored(as_converted(model, tmp_path))
    config, weights = read_stored(folder)
    assert {type(value) for name, value in weights.items() if name.endswith(LLAMA_LINEARS)} == {PackedInt4Linear}
    assert type(weights["lm_head"]) is HEAD
    assert not [name for name in weights if name.endswith(("_proj.weight", "lm_head.weight"))]  # float copies unread
    model = load_packed(folder, {"dtype": torch.bfloat16})
    assert type(model_attention.enable(model)) is LlamaPass
    assert_same_passes(model, LlamaPass.stored(config, weights, torch.device("cpu")))


def test_only_a_plain_llama_runs_from_its_stored_weights(tmp_path):
    config = MistralConfig(vocab_size=len(tiny_tokenizer()), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, sliding_window=None)
    assert read_stored(stored(as_converted(MistralForCausalLM(config).eval(), tmp_path))) is None


def test_the_continuous_engine_serves_a_stored_llama_as_solo_generate_of_its_model_answers(conversion):
    settings = Settings.from_env({"PRETRAINED_MODEL_NAME_OR_PATH": conversion})
    first = load_model(settings)  # converts and stores: the transformers model
    loaded = load_model(settings)
    assert loaded.weights is not None and loaded._model is None
    assert (loaded.window, loaded.config.hidden_size, loaded.generation_config.eos_token_id) == (
        first.window, first.config.hidden_size, first.generation_config.eos_token_id)
    engine = ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8)
    assert type(engine.run_pass) is LlamaPass and loaded._model is None
    answers = run(service(loaded, engine), samples(service(loaded, engine), GREEDY))
    assert answers == solo(loaded, GREEDY)  # solo: generate() of the model it loads now
    assert type(loaded.model.model.layers[0].mlp.up_proj) is PackedInt4Linear
    assert answers == solo(first, GREEDY)


@ONEDNN
def test_a_bfloat16_conversion_is_stored_for_onednn_linears_and_served_from_its_weights_alone(conversion):
    settings = Settings.from_env({"PRETRAINED_MODEL_NAME_OR_PATH": conversion, "DTYPE": "bfloat16",
                                  "QUANTIZE": "none"})
    first = load_model(settings)  # converts and stores
    assert type(first.model.model.layers[0].self_attn.q_proj) is OnednnLinear and first.precision.onednn
    loaded = load_model(settings)
    assert loaded.weights is not None and loaded._model is None
    assert [name for name in os.listdir(conversion) if name.startswith("onednn-bfloat16-")]
    assert {type(value) for name, value in loaded.weights.items() if name.endswith((*LLAMA_LINEARS, "lm_head"))} == {
        OnednnLinear}
    engine = ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8)
    answers = run(service(loaded, engine), samples(service(loaded, engine), GREEDY))
    assert answers == solo(first, GREEDY)


@pytest.mark.processes
def test_serving_a_stored_llama_imports_no_transformers_model_code(conversion):
    load_model(Settings.from_env({"PRETRAINED_MODEL_NAME_OR_PATH": conversion}))
    script = ("import sys; from services.transformers_lm.model.loading import load_model; "
              "from services.transformers_lm.service import build_engine; "
              "from services.transformers_lm.settings import Settings; "
              "settings = Settings.from_env(); build_engine(settings, load_model(settings)); "
              "print(sorted(name for name in sys.modules if name.startswith("
              "('transformers.models.llama.modeling', 'transformers.modeling_utils', 'torch._dynamo'))))")
    env = dict(os.environ, PRETRAINED_MODEL_NAME_OR_PATH=conversion)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
