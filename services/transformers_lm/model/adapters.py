"""A PEFT adapter (LoRA, ...) on the base model: ADAPTER_NAME_OR_PATH, merged into its weights unless MERGE_ADAPTER=0.

Either way the engines get a plain transformers model: merged, its own weights changed; unmerged, PEFT's layers
sit inside it (PeftModel injects them in place), so its forward, and the ragged attention of the continuous engine,
run the adapter without the PeftModel wrapper.
"""
import logging

logger = logging.getLogger(__name__)


def apply_adapter(model, settings) -> tuple:
    """(the model to serve, the adapter's name as ADAPTER_NAME_OR_PATH gives it, or None without one)."""
    source = settings.adapter_name_or_path
    if not source:
        return model, None
    from peft import PeftModel  # seconds of imports (torch.distributed, inductor): only when an adapter is set

    try:
        peft_model = PeftModel.from_pretrained(model, source, token=settings.hf_token)
    except Exception as error:  # PEFT's own reasons (no adapter_config.json, other base model, ...) are clear
        raise RuntimeError(f"ADAPTER_NAME_OR_PATH {source!r} could not be loaded: {error}") from error
    merged = settings.merge_adapter
    logger.info("Adapter %s %s", source, "merged into the weights" if merged else "kept apart (MERGE_ADAPTER=0)")
    return (peft_model.merge_and_unload() if merged else peft_model.get_base_model()), source
