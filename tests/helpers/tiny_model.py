"""A tiny randomly initialised causal LM and a byte-level tokenizer, built in code for fast unit tests."""
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from services.transformers_lm.model.source import LoadedModel, model_window
from services.transformers_lm.model.precision import Precision, quantize

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """One token per byte, so any text round-trips and token counts are easy to reason about."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: index for index, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE if chat_template else None
    return tokenizer


def tiny_model(vocab_size: int, window: int = 512, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=window,
                         initializer_range=0.5)  # peaked attention: wrong positions or masks change outputs
    return LlamaForCausalLM(config).eval()


def tiny_loaded(chat_template: bool = True, window: int = 512, dtype: torch.dtype = torch.float32,
                quantization: str = "none") -> LoadedModel:
    tokenizer = tiny_tokenizer(chat_template)
    model = quantize(tiny_model(len(tokenizer), window).to(dtype), quantization)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(name="tiny-random-llama", model=model, tokenizer=tokenizer, device=torch.device("cpu"),
                       window=model_window(model.config, tokenizer), precision=Precision(dtype, quantization))
