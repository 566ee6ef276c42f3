"""The package layout must never shadow the standard library, and what the package
imports at run time is what it declares as runtime dependencies."""

import ast
import operator
import re
import sys
import tomllib
from collections.abc import Mapping
from importlib.metadata import packages_distributions
from pathlib import Path

import llmservice


def test_stdlib_operator_module_is_not_shadowed() -> None:
    # operator/ holds the package but has no __init__.py, so `import operator` is the stdlib's.
    assert operator.itemgetter(1)(["a", "b"]) == "b"
    assert not hasattr(operator, "llmservice")


def test_package_imports_from_operator_directory() -> None:
    assert llmservice.__file__ is not None
    assert "/operator/llmservice/" in llmservice.__file__.replace("\\", "/")


# What the package imports, checked against what it declares: a module imported at run
# time whose distribution is only in an extra (or nowhere) breaks the image, which
# installs the wheel with no extras. The wheel test proves it end to end; this one names
# the module at once.
REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(llmservice.__file__).parent


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> set[str]:
    """The distributions named in `[project] dependencies` (not in an extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = (re.match(r"[A-Za-z0-9._-]+", spec) for spec in project["dependencies"])
    return {canonical(name[0]) for name in names if name}


def _type_checking_only(node: ast.If) -> bool:
    return ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def runtime_imports(source: str) -> set[str]:
    """Top-level names of the absolute imports that run (not those for type checkers)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def third_party_imports(package: Path) -> dict[str, set[Path]]:
    """Each imported third-party top-level module, with the files importing it."""
    imports: dict[str, set[Path]] = {}
    for path in sorted(package.rglob("*.py")):
        for module in runtime_imports(path.read_text(encoding="utf-8")):
            if module in sys.stdlib_module_names or module in ("__future__", "llmservice"):
                continue
            imports.setdefault(module, set()).add(path.relative_to(package))
    return imports


def undeclared(
    imports: dict[str, set[Path]], distributions: Mapping[str, list[str]], declared: set[str]
) -> list[str]:
    """One line per imported module that no runtime dependency provides."""
    problems = []
    for module, files in sorted(imports.items()):
        providers = {canonical(d) for d in distributions.get(module, [])}
        if not providers & declared:
            where = ", ".join(str(f) for f in sorted(files))
            provided = ", ".join(sorted(providers)) or "no installed distribution"
            problems.append(f"{module} (from {provided}), imported by {where}")
    return problems


def test_every_runtime_import_is_a_runtime_dependency() -> None:
    imports = third_party_imports(PACKAGE)
    assert {"kopf", "celpy", "jinja2", "yaml"} <= imports.keys(), sorted(imports)
    problems = undeclared(imports, packages_distributions(), runtime_requirements())
    assert not problems, "imported at run time but not in [project] dependencies:\n" + "\n".join(
        problems
    )


def test_an_import_provided_only_by_an_extra_is_reported() -> None:
    imports = {"celpy": {Path("api/validation.py")}, "yaml": {Path("render/templating.py")}}
    distributions = {"celpy": ["cel-python"], "yaml": ["PyYAML"]}
    assert undeclared(imports, distributions, {"pyyaml"}) == [
        "celpy (from cel-python), imported by api/validation.py"
    ]


def test_imports_for_type_checkers_only_are_not_runtime_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import yaml\n"
        "if TYPE_CHECKING:\n"
        "    import celpy\n"
        "else:\n"
        "    import jinja2\n"
        "def f():\n"
        "    from kopf import on\n"
    )
    assert runtime_imports(source) == {"typing", "yaml", "jinja2", "kopf"}
