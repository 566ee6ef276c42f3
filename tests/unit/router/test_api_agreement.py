"""A router started by hand and one the operator renders agree on every knob the API has.

The router's defaults come from the LLMService API models, and ``--strategy`` takes the API's
names: an LLMService with an empty `router:` section must configure the router exactly as
the router's own defaults do, and every API strategy must reach the balancer unchanged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from typing import Any, get_args

import pytest

from llmservice.api.spec import RoutingStrategy
from llmservice.api.validation import parse_llmservice
from llmservice.render import router as render_router
from llmservice.router import RouterConfig, Strategy, cli
from llmservice.router.cli import build_config, parser
from tests.unit.api.fixtures import MINIMAL, deep_merge


def _rendered(patch: dict[str, Any]) -> RouterConfig:
    args = render_router.router_args(parse_llmservice(deep_merge(MINIMAL, patch)))
    return build_config(parser().parse_args(args[1:]))


def _by_hand(*flags: str) -> RouterConfig:
    return build_config(
        parser().parse_args(["--served-model-name", "m", "--selector", "a=b", *flags])
    )


def test_an_empty_router_section_renders_the_router_defaults() -> None:
    rendered, standalone = _rendered({}), _by_hand()
    assert rendered.timeouts == standalone.timeouts
    assert rendered.max_body_bytes == standalone.max_body_bytes
    assert rendered.retry == standalone.retry
    # Two router replicas by default, which share their placements (one alone does not):
    # the one difference, the table's hash, goes with it.
    assert rendered.balancer == replace(standalone.balancer, stable_keys=True)
    assert rendered.session_header == standalone.session_header
    assert rendered.forward_authorization == standalone.forward_authorization
    assert rendered.accept_any_model_name == standalone.accept_any_model_name is False


def test_several_router_replicas_share_their_placements_and_one_alone_does_not() -> None:
    shared = _rendered({}).peers
    assert shared.port == 8082
    assert shared.selector.endswith("app.kubernetes.io/component=router")
    assert not shared.static
    alone = _rendered({"spec": {"router": {"replicas": 1}}})
    assert not alone.peers.enabled
    assert not alone.balancer.stable_keys
    round_robin = _rendered({"spec": {"router": {"strategy": "RoundRobin"}}})
    assert not round_robin.peers.enabled
    assert not _by_hand().peers.enabled


def test_a_peer_port_without_sessions_or_a_peer_list_without_it_is_refused() -> None:
    peers = ("--peer-port", "8082", "--peers", "10.0.0.2:8082")
    assert _by_hand(*peers).peers.static == ("10.0.0.2:8082",)
    with pytest.raises(ValueError, match="SessionAffinity"):
        _by_hand(*peers, "--strategy", "RoundRobin")
    with pytest.raises(ValueError, match="peer port"):
        _by_hand("--peers", "10.0.0.2:8082")
    with pytest.raises(ValueError, match="not an IP address"):
        _by_hand("--peer-port", "8082", "--peers", "router-1:8082")


def test_accept_any_model_name_reaches_the_router() -> None:
    rendered = _rendered({"spec": {"model": {"acceptAnyModelName": True}}})
    assert rendered.accept_any_model_name is True
    assert _by_hand("--accept-any-model-name").accept_any_model_name is True


def test_router_defaults_are_the_api_defaults() -> None:
    # Independent of rendering: the values a reader finds in the CRD's field reference.
    standalone = _by_hand()
    api = parse_llmservice(MINIMAL).spec.router
    assert standalone.timeouts.connect == api.timeouts.connect_seconds
    assert standalone.timeouts.first_byte == api.timeouts.first_byte_seconds
    assert standalone.timeouts.idle == api.timeouts.idle_seconds
    assert standalone.timeouts.total == api.timeouts.total_seconds
    assert standalone.max_body_bytes == api.max_request_bytes
    assert standalone.retry.attempts_max == api.retries
    assert standalone.balancer.load_bound == api.load_bound
    assert standalone.balancer.strategy == api.strategy
    assert standalone.session_header == api.session_header


def test_strategy_names_are_the_apis() -> None:
    assert [s.value for s in Strategy] == list(get_args(RoutingStrategy))


@pytest.mark.parametrize("name", get_args(RoutingStrategy))
def test_every_api_strategy_reaches_the_balancer(name: str) -> None:
    assert _rendered({"spec": {"router": {"strategy": name}}}).balancer.strategy == name
    assert _by_hand("--strategy", name).balancer.strategy is Strategy(name)


@pytest.mark.parametrize(
    ("old", "strategy"),
    [
        ("session", Strategy.SESSION),
        ("least-load", Strategy.LEAST_LOAD),
        ("round-robin", Strategy.ROUND_ROBIN),
    ],
)
def test_the_older_flag_spellings_still_parse(old: str, strategy: Strategy) -> None:
    assert _by_hand("--strategy", old).balancer.strategy is strategy


def test_an_unknown_strategy_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _by_hand("--strategy", "Random")
    assert exit_info.value.code == 2
    assert "SessionAffinity, LeastLoad, RoundRobin" in capsys.readouterr().err


def test_the_synopsis_shows_the_real_defaults() -> None:
    defaults = vars(parser().parse_args(["--served-model-name", "m"]))
    shown = re.findall(r"--([a-z-]+) ([0-9][0-9.]*|X-[A-Za-z-]+)(?=\s)", cli.__doc__ or "")
    assert len(shown) >= 14, shown
    for flag, value in shown:
        default = defaults[flag.replace("-", "_")]
        if value.startswith("X-") or value.count(".") > 1:  # a header name or an address
            assert default == value, flag
        else:
            assert default == float(value), flag


def test_the_router_loads_the_api_models_without_the_validation_machinery() -> None:
    # A fresh interpreter, so modules other tests imported do not count.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, llmservice.router.cli; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "'llmservice.api.spec'" in loaded
    assert "'llmservice.api.validation'" not in loaded
    assert "'celpy'" not in loaded
