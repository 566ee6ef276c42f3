"""The package layout must never shadow the standard library."""

import operator

import llmservice


def test_stdlib_operator_module_is_not_shadowed() -> None:
    # operator/ holds the package but has no __init__.py, so `import operator` is the stdlib's.
    assert operator.itemgetter(1)(["a", "b"]) == "b"
    assert not hasattr(operator, "llmservice")


def test_package_imports_from_operator_directory() -> None:
    assert llmservice.__file__ is not None
    assert "/operator/llmservice/" in llmservice.__file__.replace("\\", "/")
