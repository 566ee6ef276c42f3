"""Several router replicas share their placements: the flags, the port and who may reach it."""

from __future__ import annotations

from typing import Any

from llmservice.api.validation import parse_llmservice
from llmservice.render import render_all
from tests.unit.api.fixtures import MINIMAL, deep_merge


def _objects(router: dict[str, Any], network_policy: bool = True) -> list[dict[str, Any]]:
    patch = {"spec": {"router": router, "networkPolicy": {"enabled": network_policy}}}
    return render_all(parse_llmservice(deep_merge(MINIMAL, patch)))


def _router(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = (
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "chat-router"
    )
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _router_policy(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next(
        (
            o
            for o in objects
            if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-router")
        ),
        None,
    )


def test_several_router_replicas_get_the_peer_port_and_find_each_other_by_their_labels() -> None:
    objects = _objects({"replicas": 3})
    container = _router(objects)
    args = container["args"]
    assert args[args.index("--peer-port") + 1] == "8082"
    selector = args[args.index("--peer-selector") + 1]
    labels = _router_policy(objects)["spec"]["podSelector"]["matchLabels"]  # type: ignore[index]
    assert set(selector.split(",")) == {f"{k}={v}" for k, v in labels.items()}
    assert {"name": "peers", "containerPort": 8082, "protocol": "UDP"} in container["ports"]
    # The Pod's name, left out of its own peers, comes from the downward API.
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_peer_port_is_open_to_router_pods_only_and_clients_still_reach_the_router() -> None:
    policy = _router_policy(_objects({"replicas": 2}))
    assert policy is not None
    own = policy["spec"]["podSelector"]["matchLabels"]
    client_rule, peer_rule = policy["spec"]["ingress"]
    assert "from" not in client_rule  # anyone
    assert client_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert peer_rule["from"] == [{"podSelector": {"matchLabels": own}}]
    assert peer_rule["ports"] == [{"port": "peers", "protocol": "UDP"}]


def test_one_router_replica_or_no_sessions_share_nothing_and_open_nothing() -> None:
    for router in ({"replicas": 1}, {"replicas": 2, "strategy": "LeastLoad"}):
        objects = _objects(router)
        container = _router(objects)
        assert "--peer-port" not in container["args"]
        assert all(port["name"] != "peers" for port in container["ports"])
        assert _router_policy(objects) is None
    # Policies off: the peers still share, and no policy is rendered.
    objects = _objects({"replicas": 2}, network_policy=False)
    assert "--peer-port" in _router(objects)["args"]
    assert _router_policy(objects) is None
