"""The quality gate's fixed text and bound, shared by its test and `make bench`."""
from pathlib import Path

TEXT = (Path(__file__).parent.parent / "data" / "perplexity.txt").read_text()
GATE = 1.05  # a precision's perplexity on TEXT may be at most this many times float32's
REFERENCE = ("float32", "none")  # (DTYPE, QUANTIZE)
# The shipped default as it resolves on the machine, and what DTYPE=auto / QUANTIZE=auto take elsewhere or a user may.
CANDIDATES = (("auto", "auto"), ("bfloat16", "none"), ("float32", "int8"), ("bfloat16", "int4"))
