"""What ships works on its own: the wheel, installed with no extras, runs every command.

The `product` fixture builds the wheel from this checkout and installs it into a virtualenv
without extras (the Dockerfile's two steps; cached by the wheel's content hash, shared
with the sandbox's Pods). Each command runs through that virtualenv's `llmservice` entry
point, the image's entrypoint, with an environment that holds no path to the source tree
and no cluster credentials. No sandbox is needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from llmservice.sandbox.product import Product
from tests.e2e.operator_fixture import free_port
from tests.e2e.probes import answers
from tests.e2e.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "minimal.yaml"
TEMPLATES = Path("operator/llmservice/templates")
RUN_TIMEOUT = 120.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Top-level modules of the test and dev extras: none of them may be in the product.
EXTRAS_ONLY = ("pytest", "hypothesis", "kubernetes_validate", "jsonschema", "openai", "mypy")


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No cluster credentials, no kubeconfig in HOME, no Python path into the checkout."""
    home = tmp_path_factory.mktemp("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    return env | {"HOME": str(home)}


def llmservice(
    product: Product, env: dict[str, str], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(product.console_script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT,
        env=env,
        cwd=cwd,
    )


def from_source(*args: str) -> str:
    """The same command run from the checkout, to compare the product's output with."""
    result = subprocess.run(
        [sys.executable, "-m", "llmservice.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=RUN_TIMEOUT,
    )
    return result.stdout


def test_wheel_holds_the_package_and_its_templates_only(product: Product) -> None:
    assert product.wheel is not None
    with zipfile.ZipFile(product.wheel) as archive:
        names = archive.namelist()
    templates = {n for n in names if n.startswith("llmservice/templates/")}
    shipped = {f"llmservice/templates/{t.name}" for t in (ROOT / TEMPLATES).glob("*.j2")}
    assert templates == shipped
    assert "llmservice/py.typed" in names
    # Built from a clean copy: no bytecode or egg-info of the checkout comes along.
    assert not [n for n in names if "__pycache__" in n or ".egg-info" in n]
    version = product.wheel.name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"llmservice", f"llmservice-{version}.dist-info"}


def test_product_is_a_virtualenv_apart_from_the_checkout(
    product: Product, clean_env: dict[str, str], tmp_path: Path
) -> None:
    assert product.wheel is not None, "a checkout must run its built wheel"
    assert product.wheel.name.startswith("llmservice-")
    assert Path(sys.prefix).resolve() != product.prefix.resolve()
    assert (product.prefix / "pyvenv.cfg").is_file()
    assert product.console_script.is_file()
    probe = (
        "import importlib.util, llmservice; print(llmservice.__file__); "
        f"print([m for m in {EXTRAS_ONLY!r} if importlib.util.find_spec(m)])"
    )
    result = subprocess.run(
        [str(product.python), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=clean_env,
        cwd=tmp_path,
    )
    module_file, extras = result.stdout.splitlines()
    assert Path(module_file).is_relative_to(product.prefix), module_file
    assert extras == "[]", f"modules of the extras in the product: {extras}"


def test_every_module_imports_without_extras(
    product: Product, clean_env: dict[str, str], tmp_path: Path
) -> None:
    # Some modules are only imported by commands not run here: import them all.
    probe = (
        "import importlib, pkgutil, llmservice\n"
        "names = [m.name for m in pkgutil.walk_packages(llmservice.__path__, 'llmservice.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    result = subprocess.run(
        [str(product.python), "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50


def test_render_crd_and_docs_match_the_checkout(
    product: Product, clean_env: dict[str, str], tmp_path: Path
) -> None:
    rendered = llmservice(product, clean_env, "render", str(MINIMAL), cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered.stdout) if d}
    assert {"Deployment", "Service"} <= kinds, kinds
    assert rendered.stdout == from_source("render", str(MINIMAL))
    for command in ("crd", "docs"):
        result = llmservice(product, clean_env, command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == from_source(command), f"`llmservice {command}` differs"


def test_operator_without_credentials_says_so_in_one_line(
    product: Product, clean_env: dict[str, str], tmp_path: Path
) -> None:
    port = str(free_port())
    result = llmservice(
        product, clean_env, "operator", "--liveness-host", "127.0.0.1", "--liveness-port", port,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("llmservice operator: no cluster credentials"), lines[0]


@contextmanager
def serving(
    product: Product, env: dict[str, str], cwd: Path, *args: str
) -> Iterator[subprocess.Popen[str]]:
    """A long-running command, stopped with SIGTERM at the end; it must exit cleanly.

    Cleanly is status 0, or death by the SIGTERM itself: uvicorn re-raises the signal once
    it has shut down, so that a parent sees why it stopped.
    """
    log = cwd / f"{args[0]}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(product.console_script), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"`llmservice {args[0]}` ignored SIGTERM") from None
    output = log.read_text(encoding="utf-8")
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output


def healthy(process: subprocess.Popen[str], url: str) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"exited with {process.returncode} before {url} answered")
    return answers(url)


def test_sim_and_router_serve_their_health_endpoints(
    product: Product, clean_env: dict[str, str], tmp_path: Path
) -> None:
    sim_port, router_port = free_port(), free_port()
    sim_args = ["--model", "m", "--host", "127.0.0.1", "--port", str(sim_port)]
    with serving(product, clean_env, tmp_path, "sim", *sim_args, "--sim-profile", "instant") as sim:
        sim_url = f"http://127.0.0.1:{sim_port}"
        eventually(lambda: healthy(sim, f"{sim_url}/health"), START_TIMEOUT, "the sim's /health")
        router_args = ["--served-model-name", "m", "--static-backends", sim_url]
        router_args += ["--host", "127.0.0.1", "--port", str(router_port), "--drain-delay", "0"]
        with serving(product, clean_env, tmp_path, "router", *router_args) as router:
            url = f"http://127.0.0.1:{router_port}/healthz"
            eventually(lambda: healthy(router, url), START_TIMEOUT, "the router's /healthz")
