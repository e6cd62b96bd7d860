"""The layers the folders name: only the HTTP edge (api/, server.py) speaks HTTP; the engine and the model
know nothing of the service above them."""
import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "services/transformers_lm"
HTTP = ("flask", "werkzeug", "common.http")


def imports(path: Path) -> set:
    """Absolute names of the modules `path` imports (relative imports resolved inside the package)."""
    package = ["services", "transformers_lm", *path.relative_to(SERVICE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.update([module] if node.module else [f"{module}.{alias.name}" for alias in node.names])
    return names


def modules(*folders: str) -> list:
    return [path for folder in folders for path in sorted((SERVICE / folder).glob("*.py"))]


CORE = modules("engine", "model") + [SERVICE / name for name in ("service.py", "generation_params.py", "prompting.py",
                                                                  "replies.py", "errors.py", "validation.py",
                                                                  "settings.py")]


@pytest.mark.parametrize("path", CORE, ids=lambda path: str(path.relative_to(SERVICE)))
def test_below_the_edge_nothing_speaks_http(path):
    assert not {name for name in imports(path) if name.startswith(HTTP) or ".api" in name}, path


@pytest.mark.parametrize("path", modules("engine", "model"), ids=lambda path: str(path.relative_to(SERVICE)))
def test_the_engine_and_the_model_do_not_reach_up(path):
    above = ("services.transformers_lm.service", "services.transformers_lm.generation_params",
             "services.transformers_lm.prompting", "services.transformers_lm.errors", "services.transformers_lm.api")
    assert not {name for name in imports(path) if name.startswith(above)}, path


def test_the_check_sees_imports():
    assert "flask" in imports(SERVICE / "api/dream_routes.py")
    assert "services.transformers_lm.engine.errors" in imports(SERVICE / "api/errors.py")
