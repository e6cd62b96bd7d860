"""The quality gate's fixed text and bound, shared by its test and `make bench`."""
from pathlib import Path

TEXT = (Path(__file__).parent.parent / "data" / "perplexity.txt").read_text()
GATE = 1.05  # a precision's perplexity on TEXT may be at most this many times float32's
