"""schemathesis hooks (SCHEMATHESIS_HOOKS) for test_schemathesis.py: the two rules of the document that JSON
Schema cannot state, applied to generated bodies so that schema-valid ones also keep them. Both rules are
written in the document's descriptions: `prompts` and `configs` hold one item per context (or prompt), and
with `num_beams` > 1 a config's `num_return_sequences` is at most `num_beams`."""
import schemathesis

RESPOND = ("dialog_contexts", ("prompts", "configs"))
PARALLEL = {"/respond": RESPOND, "/respond/prompts": RESPOND, "/generate_goals": ("prompts", ("configs",))}


@schemathesis.hook
def map_body(context, body):
    rule = PARALLEL.get(getattr(context.operation, "path", None))
    if rule is None or not isinstance(body, dict) or not isinstance(body.get(rule[0]), list):
        return body
    main, parallel = rule
    count = len(body[main])
    for name in parallel:
        items = body.get(name)
        if isinstance(items, list) and items:
            body[name] = (items * count)[:count]
    configs = body.get("configs")
    for config in configs if isinstance(configs, list) else ():
        if isinstance(config, dict):
            beams, sequences = config.get("num_beams"), config.get("num_return_sequences")
            if _is_int(beams) and beams > 1 and _is_int(sequences) and sequences > beams:
                config["num_return_sequences"] = beams
    return body


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
