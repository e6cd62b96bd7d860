"""ENGINE=openai: what each kind of OpenAI-compatible server takes, and a sample as its /v1/completions body.

Our parameters are HF GenerationConfig names; a server takes some of them under its own names. One it has no
equivalent for is refused (`unsupported`), unless its value changes nothing. Every parameter a server takes is
sent, at its "off" value when the sample leaves it unset, so the server's own defaults (llama.cpp samples with
top_k 40 and min_p 0.05; vLLM reads the model's generation_config.json) never creep in: our generative config is
the one source of defaults, with either engine.
"""
from dataclasses import dataclass, field

from common.speaker_labels import LABEL_STOP_STRINGS

from .samples import GenerationParams

# Our name -> the value that leaves decoding as it is.
OFF = {"top_k": -1, "min_p": 0.0, "typical_p": 1.0, "repetition_penalty": 1.0, "min_new_tokens": 0,
       "no_repeat_ngram_size": 0}
SAMPLING_ONLY = ("top_k", "min_p", "typical_p")
# Decide nothing unless beams are searched, and num_beams > 1 is refused itself.
BEAM_ONLY = ("length_penalty", "early_stopping")
OPENAI_MAX_STOPS = 4  # OpenAI's own API refuses more


@dataclass(frozen=True)
class Server:
    kind: str
    token_ids: bool  # takes a prompt as token ids (else it gets the ids decoded)
    names: dict = field(default_factory=dict)  # our parameter -> the server's, beyond temperature/top_p/seed/n/stop
    fixed: dict = field(default_factory=dict)  # sent with every request, so its semantics match ours
    max_stops: int = None

    def unsupported(self, params: GenerationParams) -> list:
        """Our names of the parameters this server can't honour."""
        kwargs = params.generate_kwargs
        refused = ["num_beams"] if params.beam_search else []
        for name, value in kwargs.items():
            known = name in ("do_sample", "temperature", "top_p", "num_beams") + BEAM_ONLY or name in self.names
            if not known and OFF.get(name, ...) != value and not (name == "bad_words_ids" and not value):
                refused.append(name)
        return refused

    def body(self, model: str, prompt, params: GenerationParams, stop_strings: tuple) -> dict:
        kwargs = params.generate_kwargs
        body = {"model": model, "prompt": prompt, "max_tokens": params.max_new_tokens,
                "n": params.num_return_sequences, "stream": True, "stream_options": {"include_usage": True},
                **self.fixed}
        sampling = kwargs.get("do_sample", False)
        body["temperature"] = kwargs.get("temperature", 1.0) if sampling else 0.0
        body["top_p"] = kwargs.get("top_p", 1.0) if sampling else 1.0
        for ours, theirs in self.names.items():
            value = kwargs.get(ours, OFF.get(ours))
            if ours in SAMPLING_ONLY and not sampling:
                value = OFF[ours]
            if value is not None:
                body[theirs] = list(value) if isinstance(value, tuple) else value
        if params.seed is not None:
            body["seed"] = params.seed
        if stop_strings:
            body["stop"] = list(stop_strings[:self.max_stops])
        return body


SERVERS = {
    "vllm": Server("vllm", True, {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repetition_penalty",
                                  "min_new_tokens": "min_tokens", "eos_token_id": "stop_token_ids"},
                   max_stops=OPENAI_MAX_STOPS),  # vLLM's VLLM_MAX_STOP_STRINGS default: it refuses more
    # The penalty reads the whole context, as HF's does (llama.cpp's default is the last 64 tokens; its -1, the
    # context, is refused by its server).
    "llama.cpp": Server("llama.cpp", True, {"top_k": "top_k", "min_p": "min_p", "typical_p": "typical_p",
                                            "repetition_penalty": "repeat_penalty"}, {"repeat_last_n": 2**31 - 1}),
    "openai": Server("openai", False, max_stops=OPENAI_MAX_STOPS),
    # This service's own OpenAI API, another transformers_lm as the engine.
    "transformers_lm": Server("transformers_lm", True, max_stops=OPENAI_MAX_STOPS),
}
OWNERS = {"vllm": "vllm", "llamacpp": "llama.cpp", "transformers_lm": "transformers_lm"}  # /v1/models' `owned_by`


def server_of(kind: str, owned_by: str) -> Server:
    """The Server ENGINE_SERVER names, or (auto) the one the model list's `owned_by` reveals."""
    return SERVERS[OWNERS.get(owned_by, "openai") if kind == "auto" else kind]


def upstream_stops(matcher) -> tuple:
    """Stop strings for the server: it ends generation early at them, saving its time; the cut itself is ours
    (the sample's StopMatcher reads the streamed text). Speaker labels count only at a line start there, so a
    reply that starts by echoing its own label is not cut to nothing."""
    labels = tuple("\n" + label for label in LABEL_STOP_STRINGS) if matcher.labels else ()
    return matcher.stop_strings + labels


def error_message(payload) -> str:
    """The message of an error body as vLLM, llama.cpp's server and OpenAI word it (or the body itself)."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    return str(payload)
