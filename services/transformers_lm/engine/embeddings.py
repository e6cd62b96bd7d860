"""Embedding jobs (samples.py): texts the inference thread runs through the base model, queued with (and like) the
samples.

A waiting job goes in the same bounded queue, a departed client withdraws it the same way, and the engines
run the jobs waiting together as right-padded forward passes between their generation work.
"""
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence


@torch.inference_mode()
def embed(model, device, jobs: list) -> torch.Tensor:
    """Mean of the base model's last hidden state over each job's tokens, L2-normalised: [len(jobs), hidden].
    Right padding: under causal attention no real token sees the padding, and the positions stay 0, 1, ..."""
    ids = [torch.tensor(job.input_ids, dtype=torch.long) for job in jobs]
    input_ids = pad_sequence(ids, batch_first=True).to(device)
    mask = pad_sequence([torch.ones_like(row) for row in ids], batch_first=True).to(device)
    hidden = model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state.float()
    pooled = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    return F.normalize(pooled, dim=-1)
