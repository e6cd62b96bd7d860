"""Perplexity on a fixed text: the quality gate every dtype and quantization must pass before it is a default."""
import math

import torch
import torch.nn.functional as F


@torch.inference_mode()
def perplexity(model, tokenizer, text: str, chunk: int = 512) -> float:
    """exp(mean next-token negative log-likelihood) over `text` in consecutive chunks of `chunk` tokens."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"][0].to(model.device)
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, chunk):
        piece = ids[start:start + chunk + 1]
        logits = model(input_ids=piece[None, :-1]).logits[0].float()
        total += F.cross_entropy(logits, piece[1:], reduction="sum").item()
        count += len(piece) - 1
    return math.exp(total / count)
