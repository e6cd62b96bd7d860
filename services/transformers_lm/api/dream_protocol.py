"""Dream's request bodies, declared once: the declarations validate /respond and /generate_goals and are their
schemas in /openapi.json. Each failure names the field it is about."""
from functools import lru_cache
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ..generation_params import Limits, config_error, config_type
from ..service import Task
from ..validation import STRICT, Text, invalid_field, text
from .bodies import require_object

PER_ITEM = "one item per context; missing, null or []: none for every context"


def _one_per(main: str, *parallel: str):
    """A validator of optional lists parallel to `main` (a check JSON Schema cannot state)."""
    @field_validator(*parallel)
    @classmethod
    def same_length(cls, value, info: ValidationInfo):
        count = len(info.data.get(main) or ())
        if value and len(value) != count:
            raise ValueError(f"must have one item per {main} item ({count}), got {len(value)}")
        return value
    return same_length


@lru_cache(maxsize=16)
def dream_models(limits: Limits = Limits()) -> tuple:
    """(RespondRequest, GoalsRequest) within these limits."""
    config_list = Annotated[Optional[list[Optional[config_type(limits)]]], Field(description=PER_ITEM)]

    class RespondRequest(BaseModel):
        """Other keys are values a skill forwards (`<lowercase env var>s`, one per context): accepted, ignored."""
        model_config = ConfigDict(**STRICT, extra="allow")
        dialog_contexts: Annotated[list[Annotated[list[Text], Field(min_length=1)]],
                                   Field(min_length=1, max_length=limits.max_contexts,
                                         description="one dialog per sample, its utterances oldest first")]
        prompts: Annotated[Optional[list[Optional[Text]]], Field(description=f"instructions, {PER_ITEM}")] = None
        configs: config_list = None
        check_lengths = _one_per("dialog_contexts", "prompts", "configs")

    class GoalsRequest(BaseModel):
        model_config = ConfigDict(**STRICT, extra="allow")
        prompts: Annotated[list[Text], Field(min_length=1, max_length=limits.max_contexts)]
        configs: config_list = None
        check_lengths = _one_per("prompts", "configs")

    return RespondRequest, GoalsRequest


@lru_cache(maxsize=16)
def embeddings_model(limits: Limits = Limits()):
    """EmbeddingsRequest (POST /embeddings) within these limits."""
    class EmbeddingsRequest(BaseModel):
        """Other keys are accepted and ignored, as in Dream's other bodies."""
        model_config = ConfigDict(**STRICT, extra="allow")
        texts: Annotated[list[text(min_length=1)], Field(min_length=1, max_length=limits.max_contexts)]

    return EmbeddingsRequest


class PromptText(BaseModel):
    """What the model reads for one context of a /respond body (POST /respond/prompts)."""
    text: str = Field(description="the model input: the prompt and the turns that fit the window, after the "
                                  "config's replacements, in the chat template or Dream's Human:/AI: format")
    tokens: int = Field(description="its length in tokens")


def prompt_texts(pairs) -> list:
    """The /respond/prompts answer: one PromptText per (text, tokens) pair."""
    return [PromptText(text=text, tokens=tokens).model_dump() for text, tokens in pairs]


def _validated(model, body):
    try:
        return model.model_validate(require_object(body))
    except ValidationError as error:
        raise config_error(error) from None  # the only closed objects of a Dream body are its configs


def parse_respond(body, limits: Limits = Limits()) -> list:
    """POST /respond -> one Task per context."""
    request = _validated(dream_models(limits)[0], body)
    count = len(request.dialog_contexts)
    prompts, configs = request.prompts or [None] * count, request.configs or [None] * count
    return [Task(prompt or "", context, config, f"dialog_contexts[{index}]")
            for index, (context, prompt, config) in enumerate(zip(request.dialog_contexts, prompts, configs))]


def parse_embeddings(body, limits: Limits = Limits()) -> list:
    """POST /embeddings -> its texts."""
    try:
        return embeddings_model(limits).model_validate(require_object(body)).texts
    except ValidationError as error:
        raise invalid_field(error) from None


def parse_goals(body, limits: Limits = Limits()) -> tuple:
    """POST /generate_goals -> (prompts, configs)."""
    request = _validated(dream_models(limits)[1], body)
    return request.prompts, request.configs or [None] * len(request.prompts)
