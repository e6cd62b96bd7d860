"""OpenAI-compatible API minus HTTP and the model, declared once with pydantic: the request models validate
bodies into our generation config (HF GenerationConfig names, see generation_params.py) and, with the response
models that build every answer and stream event, are the /v1 schemas of /openapi.json.

OpenAI parameters this service does not implement are refused with a 400 naming them unless they hold
their do-nothing value: a client must never silently get other behaviour than it asked for.
"""
import base64
import hmac
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal, Optional, Union

import numpy
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WrapValidator

from common.http import HTTPError

from ..generation_params import MAX_SEED, MAX_STOP_STRING_CHARS, Limits
from ..validation import STRICT, Strict, Text, integer, invalid_field, listed, only, text
from .bodies import require_object

MAX_STOP_STRINGS = 4  # OpenAI's limit
MAX_TEMPERATURE = 2.0
# OpenAI's n defaults to 1 whatever the model's Dream config says, and a reply may be as short as the model
# likes (Dream's min_new_tokens would hold back EOS): merged under the request's config.
OPENAI_DEFAULTS = {"num_return_sequences": 1, "min_new_tokens": 0}
# Our parameter names as an OpenAI client knows them, for the errors the service's limits raise.
OPENAI_NAMES = {"max_new_tokens": "max_tokens", "num_return_sequences": "n", "stop_strings": "stop"}
# OpenAI name -> GenerationConfig name; max_completion_tokens wins over the older max_tokens, as in vLLM.
CONFIG_NAMES = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens",
                "temperature": "temperature", "top_p": "top_p", "n": "num_return_sequences", "stop": "stop_strings",
                "seed": "seed"}


class TextPart(Strict):
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """Other keys (the official client echoes `name`, `tool_calls`, ... of a previous reply) only null or []."""
    model_config = ConfigDict(**STRICT, extra="allow")
    __pydantic_extra__: dict[str, Optional[Annotated[list, Field(max_length=0)]]]
    role: Literal["system", "user", "assistant"]
    content: Annotated[list[TextPart], Field(min_length=1), BeforeValidator(
        lambda value: [{"type": "text", "text": value}] if isinstance(value, str) else value,
        json_schema_input_type=Union[Text, Annotated[list[TextPart], Field(min_length=1)]])]

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.content)


class StreamOptions(Strict):
    """Without `stream`, ignored: a whole answer always carries `usage`."""
    include_usage: Optional[bool] = None


@lru_cache(maxsize=16)
def openai_models(limits: Limits = Limits()) -> tuple:
    """(ChatCompletionRequest, CompletionRequest) within these limits; every parameter is nullable (null:
    not given)."""
    new_tokens = Optional[integer(ge=1, le=limits.max_new_tokens)]

    class Shared(Strict):
        model: Optional[str] = Field(None, description="echoed back; this service serves one model")
        max_tokens: new_tokens = None
        temperature: Optional[Annotated[float, Field(ge=0, le=MAX_TEMPERATURE, description="0: greedy")]] = None
        top_p: Optional[Annotated[float, Field(gt=0, le=1)]] = None
        n: Optional[integer(ge=1, le=limits.max_return_sequences)] = None
        stop: Optional[listed(text(min_length=1, max_length=MAX_STOP_STRING_CHARS), max_length=MAX_STOP_STRINGS)] = None
        seed: Optional[integer(ge=0, le=MAX_SEED)] = None
        stream: Optional[bool] = Field(None, description="server-sent events, ended by `data: [DONE]`")
        stream_options: Optional[StreamOptions] = None
        user: Optional[str] = Field(None, description="an end-user id: accepted, never changes the output")
        frequency_penalty: only(0) = None
        presence_penalty: only(0) = None
        logit_bias: only({}) = None

    class ChatCompletionRequest(Shared):
        messages: Annotated[list[ChatMessage], Field(min_length=1)]
        max_completion_tokens: new_tokens = None
        logprobs: only(False) = None
        top_logprobs: only(0) = None
        tools: only([]) = None
        tool_choice: only("none", "auto") = None  # without tools both mean no tool call
        parallel_tool_calls: only(True, False) = None
        functions: only([]) = None
        function_call: only("none", "auto") = None
        response_format: only({"type": "text"}) = None
        modalities: only(["text"]) = None
        audio: only() = None
        prediction: only() = None
        reasoning_effort: only() = None
        verbosity: only() = None
        web_search_options: only() = None
        store: only(False) = None
        metadata: only({}) = None
        service_tier: only("auto", "default") = None

    class CompletionRequest(Shared):
        prompt: texts_or_token_ids(limits) = Field(description="a text, a list of texts, or the same as token ids")
        logprobs: only() = None
        echo: only(False) = None
        suffix: only("") = None
        best_of: only(1) = None

    return ChatCompletionRequest, CompletionRequest


def _explained(message: str) -> WrapValidator:
    """pydantic's reasons replaced by one message that says what is accepted (a union's name each member)."""
    def validate(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(message) from None
    return WrapValidator(validate)


def texts_or_token_ids(limits: Limits):
    """OpenAI's `prompt` / `input`: a text, a list of texts, or the same as token ids (each below the vocabulary)."""
    token = integer(ge=0, le=None if limits.vocab_size is None else limits.vocab_size - 1)
    token_ids = Annotated[list[token], Field(min_length=1)]
    piece = text(min_length=1)
    many = f"at most {limits.max_contexts}" if limits.max_contexts else "any number"
    below = f" below {limits.vocab_size}" if limits.vocab_size else ""

    def several(item):
        return Annotated[list[item], Field(min_length=1, max_length=limits.max_contexts)]

    return Annotated[Union[piece, several(piece), token_ids, several(token_ids)], _explained(
        f"must be a non-empty string, a list of {many} of them, a non-empty list of token ids{below}, "
        f"or a list of {many} such lists")]


def one_per_item(value) -> list:
    """A texts_or_token_ids value as a list of its items (texts or token id lists)."""
    return [value] if isinstance(value, str) or isinstance(value[0], int) else value


@lru_cache(maxsize=16)
def embedding_model(limits: Limits = Limits()):
    """EmbeddingRequest within these limits."""
    size = limits.embedding_size
    dimensions_type = Optional[integer(ge=size or 1, le=size)]
    if size:
        dimensions_type = Annotated[dimensions_type, _explained(
            f"must be {size}, the model's hidden size: its embeddings cannot be shortened")]

    class EmbeddingRequest(Strict):
        input: texts_or_token_ids(limits) = Field(description="a text, a list of texts, or the same as token ids")
        model: Optional[str] = Field(None, description="echoed back; this service serves one model")
        encoding_format: Optional[Literal["float", "base64"]] = Field(
            None, description="float (the default), or base64 of the little-endian float32 values")
        dimensions: dimensions_type = Field(None, description="only the model's hidden size")
        user: Optional[str] = Field(None, description="an end-user id: accepted, never changes the output")

        @property
        def inputs(self) -> list:
            """One text or token id list per embedding."""
            return one_per_item(self.input)

    return EmbeddingRequest


# Where an error stops: at the parameter, not inside it.
LEAVES = frozenset(CONFIG_NAMES)
MESSAGES = {"extra_forbidden": "is not a parameter of this endpoint"}


@dataclass(frozen=True)
class OpenAIRequest:
    kind: str  # "chat" or "completion"
    config: dict  # generation parameters in GenerationConfig names, only those the client gave
    messages: list = None  # chat: [{"role": ..., "content": str}, ...]
    prompts: list = None  # completion: texts or token id lists; each gets n choices, index prompt_index * n + i
    stream: bool = False
    include_usage: bool = False
    model: str = None  # echoed back; None: the client gave none
    defaults = OPENAI_DEFAULTS
    names = OPENAI_NAMES

    @property
    def n(self) -> int:
        return self.config.get("num_return_sequences", OPENAI_DEFAULTS["num_return_sequences"])


def _validated(model, body):
    try:
        return model.model_validate(require_object(body))
    except ValidationError as error:
        raise invalid_field(error, leaves=LEAVES, messages=MESSAGES) from None


def _config(request) -> dict:
    given = request.model_dump(include=set(CONFIG_NAMES), exclude_none=True)
    config = {CONFIG_NAMES[name]: value for name, value in given.items() if name != "max_completion_tokens"}
    if "max_completion_tokens" in given:
        config["max_new_tokens"] = given["max_completion_tokens"]
    return config


def _common(request) -> dict:
    options = request.stream_options
    return {"stream": bool(request.stream), "model": request.model,
            "include_usage": bool(request.stream and options and options.include_usage)}


def parse_chat(body, limits: Limits = Limits()) -> OpenAIRequest:
    """POST /v1/chat/completions body -> OpenAIRequest; InvalidField names the offending field."""
    request = _validated(openai_models(limits)[0], body)
    messages = [{"role": message.role, "content": message.text} for message in request.messages]
    return OpenAIRequest("chat", _config(request), messages=messages, **_common(request))


def parse_completion(body, limits: Limits = Limits()) -> OpenAIRequest:
    """POST /v1/completions body -> OpenAIRequest; InvalidField names the offending field."""
    request = _validated(openai_models(limits)[1], body)
    return OpenAIRequest("completion", _config(request), prompts=one_per_item(request.prompt), **_common(request))


def parse_embeddings(body, limits: Limits = Limits()):
    """POST /v1/embeddings body -> EmbeddingRequest; InvalidField names the offending field."""
    return _validated(embedding_model(limits), body)


def check_api_key(authorization: str, api_key: str):
    """With an API key configured, `Authorization: Bearer <key>` must carry it (401 otherwise)."""
    if not api_key:
        return
    scheme, _, token = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise HTTPError(401, "a valid API key is required: Authorization: Bearer <key>", "authorization")


# -- answers ---------------------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Delta(BaseModel):
    """New text of a choice; `role` only in its first chunk, `content` absent in its last."""
    role: Optional[Literal["assistant"]] = Field(None, exclude_if=lambda value: value is None)
    content: Optional[str] = Field(None, exclude_if=lambda value: value is None)


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: Optional[FinishReason]
    logprobs: None


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: Optional[FinishReason]  # null in a stream until the choice ends
    logprobs: None


class Envelope(BaseModel):
    id: str
    created: int
    model: str
    usage: Optional[Usage]


class ChatCompletion(Envelope):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]


class ChatCompletionChunk(Envelope):
    """One stream event; the usage event has no choices."""
    object: Literal["chat.completion.chunk"]
    choices: list[ChunkChoice]


class Completion(Envelope):
    """A completion, or (finish_reason null until a choice ends) one event of its stream."""
    object: Literal["text_completion"]
    choices: list[TextChoice]


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    adapter: Optional[str] = Field(None, description="the PEFT adapter on the model (ADAPTER_NAME_OR_PATH), if any")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: Union[list[float], str] = Field(description="unit length; a string with encoding_format base64")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def new_id(kind: str) -> str:
    """A response id in OpenAI's style: chatcmpl-... for chat, cmpl-... for completions."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_completion(id: str, created: int, model: str, choices, usage: dict = None) -> dict:
    """choices: (index, text, finish_reason) with finish_reason "stop" or "length"."""
    return ChatCompletion(id=id, object="chat.completion", created=created, model=model, usage=usage, choices=[
        ChatChoice(index=index, message=AssistantMessage(role="assistant", content=text),
                   finish_reason=finish_reason, logprobs=None)
        for index, text, finish_reason in choices]).model_dump()


def chat_chunk(id: str, created: int, model: str, choices, usage: dict = None, with_role: bool = False) -> dict:
    """One stream event. choices: (index, new text or None, finish_reason or None); `with_role` marks
    the first chunk of a choice."""
    return ChatCompletionChunk(id=id, object="chat.completion.chunk", created=created, model=model, usage=usage,
                               choices=[ChunkChoice(index=index, finish_reason=finish_reason, logprobs=None,
                                                    delta=Delta(role="assistant" if with_role else None, content=text))
                                        for index, text, finish_reason in choices]).model_dump()


def text_completion(id: str, created: int, model: str, choices, usage: dict = None) -> dict:
    """choices: (index, text, finish_reason) with finish_reason "stop", "length" or (streaming) None."""
    return Completion(id=id, object="text_completion", created=created, model=model, usage=usage, choices=[
        TextChoice(index=index, text=text, finish_reason=finish_reason, logprobs=None)
        for index, text, finish_reason in choices]).model_dump()


# OpenAI streams completions in the completion shape itself: new text per choice, finish_reason null until the end.
completion_chunk = text_completion


def model_list(model_name: str, created: int, adapter: Optional[str] = None, owned_by: str = "transformers_lm") -> dict:
    return ModelList(object="list", data=[Model(id=model_name, object="model", created=created, owned_by=owned_by,
                                                adapter=adapter)]).model_dump()


def embedding_list(vectors: list, model: str, tokens: int, encoding_format: str = None) -> dict:
    """OpenAI's answer of /v1/embeddings; base64 as OpenAI encodes it (and its client decodes it)."""
    if encoding_format == "base64":
        vectors = [base64.b64encode(numpy.asarray(vector, dtype="<f4").tobytes()).decode() for vector in vectors]
    return EmbeddingList(object="list", model=model, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
                         data=[Embedding(object="embedding", index=index, embedding=vector)
                               for index, vector in enumerate(vectors)]).model_dump()


def sse(payload: dict) -> str:
    """One server-sent event; json.dumps escapes newlines, so the data stays on one line."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


SSE_DONE = "data: [DONE]\n\n"
