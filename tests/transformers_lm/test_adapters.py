"""PEFT adapters (ADAPTER_NAME_OR_PATH): a LoRA made here on the tiny model changes its greedy output, and the
service's output, merged (MERGE_ADAPTER=1) or not, under either engine, is PEFT's own generate()'s."""
import time

import pytest
import requests
import torch
from peft import PeftModel
from transformers import AutoTokenizer

from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.model.loading import load_model
from services.transformers_lm.service import LMService, Task
from services.transformers_lm.settings import Settings
from tests.helpers.processes import save_tiny_model, tiny_lm, wait_http
from tests.helpers.tiny_adapter import base_model, save_tiny_adapter

NEW_TOKENS = 10
# min_new_tokens holds back EOS: every reply is NEW_TOKENS long, so all of it is compared.
GREEDY = {"do_sample": False, "max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "num_return_sequences": 1}
CONTEXTS = [["Hello there"], ["What is the capital of France?"], ["a", "b", "c"]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple:
    """(tiny model folder, its LoRA adapter's folder)."""
    root = tmp_path_factory.mktemp("adapters")
    model_folder = save_tiny_model(root / "model")
    return model_folder, save_tiny_adapter(root / "adapter", model_folder)


def reference(folders, prompts: list, adapter: bool = True, min_new_tokens: int = NEW_TOKENS) -> list:
    """Greedy texts of PEFT's own generate() (the base model's own without `adapter`), one prompt at a time:
    prompts are token id lists, the texts decoded as the service decodes them."""
    model_folder, adapter_folder = folders
    model = PeftModel.from_pretrained(base_model(model_folder), adapter_folder) if adapter else base_model(model_folder)
    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    texts = []
    for ids in prompts:
        output = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=min_new_tokens)
        texts.append(tokenizer.decode(output[0, len(ids):], skip_special_tokens=True))
    return texts


def settings(folders, **env) -> Settings:
    model_folder, adapter_folder = folders
    return Settings.from_env({"PRETRAINED_MODEL_NAME_OR_PATH": model_folder, "ADAPTER_NAME_OR_PATH": adapter_folder,
                              "DTYPE": "float32", "TORCH_NUM_THREADS": "1", **env})


@pytest.mark.parametrize("batching", ["continuous", "static"])
@pytest.mark.parametrize("merge", ["1", "0"])
def test_the_engines_with_the_adapter_give_what_peft_generate_gives(folders, merge, batching):
    loaded = load_model(settings(folders, MERGE_ADAPTER=merge))
    assert loaded.adapter == folders[1]
    assert not isinstance(loaded.model, PeftModel)  # the engines get the transformers model itself
    # Merged, the adapter lives in the weights; unmerged, PEFT's LoRA layers sit inside the model.
    assert any("lora_B" in name for name, _ in loaded.model.named_parameters()) == (merge == "0")
    service = LMService(settings(folders, MERGE_ADAPTER=merge, BATCHING=batching), loaded)
    assert isinstance(service.engine, ContinuousEngine) == (batching == "continuous")
    samples = [service.sample(Task("Be brief.", context, GREEDY), service.defaults, "c") for context in CONTEXTS]
    got = [future.result(60)[0].text for future in service.engine.submit(samples)]  # decoded in one batch
    expected = reference(folders, [sample.input_ids for sample in samples])
    assert got == expected
    assert expected != reference(folders, [sample.input_ids for sample in samples], adapter=False)


@pytest.mark.parametrize("quantization, dtype", [("int8", "float32"), ("int4", "bfloat16")])
def test_quantization_covers_the_base_layers_of_an_unmerged_adapter_but_not_its_lora_matrices(folders, quantization,
                                                                                              dtype):
    loaded = load_model(settings(folders, MERGE_ADAPTER="0", QUANTIZE=quantization, DTYPE=dtype))
    attention = loaded.model.model.layers[0].self_attn
    assert type(attention.q_proj.lora_B["default"].weight) is torch.nn.Parameter
    assert type(attention.q_proj.base_layer.weight) is not torch.nn.Parameter  # torchao's tensor
    assert type(attention.k_proj.weight) is not torch.nn.Parameter
    service = LMService(settings(folders, MERGE_ADAPTER="0", QUANTIZE=quantization, DTYPE=dtype), loaded)
    [[reply]], errors = service.respond([Task("Be brief.", ["Hello there"], GREEDY)])
    assert errors == [None] and reply


def test_a_bad_adapter_path_fails_loading_with_a_clear_message(folders, tmp_path):
    with pytest.raises(RuntimeError, match=r"ADAPTER_NAME_OR_PATH '.*/missing' could not be loaded: "
                                           r"Can't find 'adapter_config.json'"):
        load_model(settings(folders, ADAPTER_NAME_OR_PATH=str(tmp_path / "missing")))


@pytest.mark.processes
def test_servers_with_the_adapter_name_it_and_answer_as_peft_does(folders, tmp_path):
    """Real gunicorn servers, merged and unmerged side by side, and one whose adapter path is wrong."""
    model_folder, adapter = folders
    env = {"ADAPTER_NAME_OR_PATH": adapter, "MAX_NEW_TOKENS": str(NEW_TOKENS)}
    servers = {merge: tiny_lm(model_folder, {**env, "MERGE_ADAPTER": merge}, tmp_path / f"merge{merge}.log")
               for merge in ("1", "0")}
    bad, bad_url = tiny_lm(model_folder, {**env, "ADAPTER_NAME_OR_PATH": str(tmp_path / "missing")},
                           tmp_path / "bad.log")
    prompts = ["Hello there", "What is the capital of France?"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_folder)
        # OpenAI's replies may end at EOS (no min_new_tokens): so may generate()'s here.
        expected = reference(folders, [tokenizer(prompt)["input_ids"] for prompt in prompts], min_new_tokens=0)
        for merge, (process, url) in servers.items():
            wait_http(f"{url}/health", timeout=180, process=process)
            completion = requests.post(f"{url}/v1/completions", timeout=60, json={
                "prompt": prompts, "max_tokens": NEW_TOKENS, "temperature": 0})
            assert completion.status_code == 200, completion.text
            assert [choice["text"] for choice in completion.json()["choices"]] == expected, merge
            health = requests.get(f"{url}/health", timeout=10).json()
            assert health["adapter"] == adapter and "passes" in health["batching"]  # the continuous engine's
            [listed] = requests.get(f"{url}/v1/models", timeout=10).json()["data"]
            assert (listed["id"], listed["adapter"]) == (model_folder, adapter)
        wait_http(f"{bad_url}/ping", timeout=120, process=bad)  # listening; /health says loading, then error
        deadline = time.monotonic() + 120
        while requests.get(f"{bad_url}/health", timeout=10).json()["status"] == "loading":
            assert time.monotonic() < deadline and bad.alive(), bad.log()
            time.sleep(0.2)
        health = requests.get(f"{bad_url}/health", timeout=10)
        assert (health.status_code, health.json()["status"]) == (503, "error")
        assert f"ADAPTER_NAME_OR_PATH '{tmp_path / 'missing'}' could not be loaded" in bad.log()
    finally:
        for process, _ in servers.values():
            process.stop()
        bad.stop()
