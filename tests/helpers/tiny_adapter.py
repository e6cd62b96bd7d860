"""A LoRA adapter for the tiny model of tiny_model.py, made with peft and saved as a folder ADAPTER_NAME_OR_PATH
can name."""
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def base_model(model_folder):
    """The tiny model saved in `model_folder`, float32 as the service loads it with DTYPE=float32."""
    return AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32).eval()


def save_tiny_adapter(folder, model_folder) -> str:
    """A LoRA on q_proj and v_proj of the model in `model_folder`, its weights random, saved in `folder`."""
    model = get_peft_model(base_model(model_folder), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: an untouched adapter changes nothing
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    return str(folder)
