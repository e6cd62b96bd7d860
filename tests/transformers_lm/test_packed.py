"""model/packed.py: a GGUF conversion's int4 model stored once computes, loaded back, what it computed packed afresh."""
import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from services.transformers_lm.model.gguf import WEIGHTS_FILE
from services.transformers_lm.model.packed import is_stored, load_packed, packed_folder, quantize_and_store
from services.transformers_lm.model.precision import PackedInt4Linear
from tests.helpers.tiny_model import tiny_model


@pytest.fixture
def conversion(tmp_path):
    """A folder as model/gguf.py leaves it: a model and the GGUF's weight types."""
    tiny_model(vocab_size=64).save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_text(json.dumps({"layer_types": ["Q4_1"], "layer_bits": 4}))
    return str(tmp_path)


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
    assert type(stored.lm_head) is torch.nn.Linear and stored.lm_head.weight.dtype == torch.bfloat16  # kept float
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
