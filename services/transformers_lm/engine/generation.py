"""Static batching: one left-padded generate() call for a group of compatible samples.

The fallback engine's only step, and how the continuous engine runs beam search.
"""
import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from .samples import GenerationParams, Hypothesis


class RowStops(StoppingCriteria):
    """Ends each row on its own: at its max_new_tokens or when its stop string / speaker label appears.

    Only the last few tokens of a row are decoded per step (enough to hold the longest stop string),
    so the check costs the same at token 5 and token 500.
    """

    def __init__(self, prompt_length: int, limits: list, matchers: list, tokenizer):
        self.prompt_length = prompt_length
        self.limits = limits
        self.matchers = matchers
        self.tokenizer = tokenizer
        self.lengths = list(limits)  # tokens each row keeps; shortened when a stop appears

    def __call__(self, input_ids, scores, **kwargs):
        generated = input_ids.shape[1] - self.prompt_length
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, (limit, matcher) in enumerate(zip(self.limits, self.matchers)):
            if self.lengths[row] < limit or generated >= limit:
                done[row] = True
                continue
            tail = matcher.longest + 2
            if generated <= tail:
                stopped = matcher.find(self._decode(input_ids[row, self.prompt_length:])) is not None
            else:
                stopped = matcher.pattern.search(self._decode(input_ids[row, -tail:])) is not None
            if stopped:
                self.lengths[row] = generated
                done[row] = True
        return done

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def left_pad(rows: list, pad_id: int, device) -> tuple:
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, ids in enumerate(rows):
        input_ids[index, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[index, width - len(ids):] = 1
    return input_ids.to(device), attention_mask.to(device)


def eos_ids(generation_config, params: GenerationParams) -> list:
    eos = params.generate_kwargs.get("eos_token_id", generation_config.eos_token_id)
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def generate_group(loaded, samples: list) -> list:
    """Hypotheses for each sample; all samples share one batch key."""
    model, tokenizer = loaded.model, loaded.tokenizer
    params = samples[0].params
    beam = params.beam_search
    rows = [sample for sample in samples for _ in range(sample.rows)]
    limits = [sample.params.max_new_tokens for sample in rows]
    eos = eos_ids(model.generation_config, params)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    input_ids, attention_mask = left_pad([sample.input_ids for sample in rows], pad_id, loaded.device)

    kwargs = dict(params.generate_kwargs)
    kwargs.pop("eos_token_id", None)
    # A clean config: our generative config is the single source of defaults, not the checkpoint's.
    config = GenerationConfig(max_new_tokens=max(limits), eos_token_id=eos or None, pad_token_id=pad_id,
                              bos_token_id=model.generation_config.bos_token_id,
                              num_return_sequences=params.num_return_sequences if beam else 1, **kwargs)
    stops = RowStops(input_ids.shape[1], limits, [sample.matcher for sample in rows], tokenizer)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                # Per-row stops would misread beams (rows are reordered), so beams cut afterwards.
                                stopping_criteria=StoppingCriteriaList([] if beam else [stops]))
    generated = output[:, input_ids.shape[1]:].tolist()

    per_sequence = params.num_return_sequences if beam else 1
    texts = []
    for index, ids in enumerate(generated):
        sample = rows[index // per_sequence] if beam else rows[index]
        limit = sample.params.max_new_tokens
        keep = limit if beam else stops.lengths[index]
        ids = ids[:keep]
        end = next((position for position, token in enumerate(ids) if token in eos), len(ids))
        text = tokenizer.decode(ids[:end], skip_special_tokens=True)
        stop = sample.matcher.find(text)
        stopped = stop is not None or end < len(ids) or keep < limit
        texts.append(Hypothesis(text[:stop], "stop" if stopped else "length", end))

    results, position = [], 0
    for sample in samples:
        count = sample.params.num_return_sequences
        results.append(texts[position:position + count])
        position += count
    return results
