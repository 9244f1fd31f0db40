"""deploy/kubernetes/ checked offline, as `kubectl apply --dry-run=server` would and more.

Each object is validated against the schema of its kind: the Kubernetes ones that the
kubernetes-validate package ships (strict: an unknown field is an error), and CloudNativePG's
Cluster against its vendored schema (deploy/kubernetes/schemas/, made strict the same way). Then
what an operator would check by hand: the Ingress sends each path where the clients expect it,
Services select the pods and ports that exist, probes name real routes, every setting and
command is one pgwarden knows.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from core.config import Config
from pgwarden.cli import build_parser
from vaultapi.app import create_app as create_api
from wshub.app import create_app as create_hub

KUBERNETES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: the oldest Kubernetes the manifests are meant for (their preStop sleep action is on by default from 1.30)
VERSION = "1.30"
CLUSTER_SCHEMA = KUBERNETES / "schemas" / "postgresql.cnpg.io-v1-cluster.json"


def _objects() -> list[dict[str, Any]]:
    listed = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"]
    return [doc for name in listed for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


OBJECTS = _objects()


def _find(kind: str, name: str) -> dict[str, Any]:
    [found] = [obj for obj in OBJECTS if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return found


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the fields are listed, as the strict
    Kubernetes schemas do (a CRD's own schema only prunes them, silently)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


CLUSTER_VALIDATOR = jsonschema.Draft202012Validator(_strict(json.loads(CLUSTER_SCHEMA.read_text())))


def validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"] == "postgresql.cnpg.io/v1":
        CLUSTER_VALIDATOR.validate(obj)
    else:
        kubernetes_validate.validate(obj, VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())["resources"])
    assert listed == {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda obj: f"{obj['kind']}/{obj['metadata']['name']}")
def test_each_object_matches_the_schema_of_its_kind(obj: dict[str, Any]) -> None:
    validate(obj)


@pytest.mark.parametrize("kind,name,path,value", [
    ("Deployment", "pgwarden-api", ["spec", "replicas"], "two"),
    ("Deployment", "pgwarden-hub", ["spec", "template", "spec", "containers", 0, "readinesProbe"], {}),
    ("Cluster", "pgwarden-db", ["spec", "postgresql", "synchronous", "method"], "all"),
    ("Cluster", "pgwarden-db", ["spec", "instancez"], 3),
    ("Ingress", "pgwarden-hub", ["spec", "rules", 0, "http", "paths", 0, "backend", "service", "port", "number"],
     "3012"),
    ("HorizontalPodAutoscaler", "pgwarden-api", ["spec", "maxReplica"], 10),
])
def test_the_validation_catches_a_mistake(kind: str, name: str, path: list[Any], value: Any) -> None:
    broken = copy.deepcopy(_find(kind, name))
    node = broken
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def _backend(request_path: str) -> str:
    """The Service that receives a path, by the Ingress rules (an Exact match wins, then the
    longest Prefix)."""
    matches = []
    for ingress in (obj for obj in OBJECTS if obj["kind"] == "Ingress"):
        for rule_path in ingress["spec"]["rules"][0]["http"]["paths"]:
            path, kind = rule_path["path"], rule_path["pathType"]
            if (kind == "Exact" and request_path == path) or (
                    kind == "Prefix" and (request_path + "/").startswith(path.rstrip("/") + "/")):
                matches.append((kind == "Exact", len(path), rule_path["backend"]["service"]["name"]))
    return max(matches)[2]


@pytest.mark.parametrize("request_path,service", [
    ("/notifications/hub", "pgwarden-hub"),
    ("/notifications/anonymous-hub", "pgwarden-hub"),
    ("/notifications/hub/negotiate", "pgwarden-api"),  # a plain POST the API answers
    ("/api/sync", "pgwarden-api"),
    ("/identity/connect/token", "pgwarden-api"),
    ("/alive", "pgwarden-api"),
])
def test_the_ingress_sends_each_path_where_the_clients_expect_it(request_path: str, service: str) -> None:
    assert _backend(request_path) == service


def test_the_hub_ingress_keeps_websockets_open_longer_than_pings_apart() -> None:
    annotations = _find("Ingress", "pgwarden-hub")["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 60


def _container(deployment: str) -> dict[str, Any]:
    [container] = _find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def test_services_select_the_pods_and_ports_that_exist() -> None:
    for service in (obj for obj in OBJECTS if obj["kind"] == "Service"):
        [deployment] = [obj for obj in OBJECTS if obj["kind"] == "Deployment" and service["spec"]["selector"].items()
                        <= obj["spec"]["template"]["metadata"]["labels"].items()]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()
        ports = {port["name"] for port in _container(deployment["metadata"]["name"])["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    for ingress in (obj for obj in OBJECTS if obj["kind"] == "Ingress"):
        for rule_path in ingress["spec"]["rules"][0]["http"]["paths"]:
            backend = rule_path["backend"]["service"]
            service = _find("Service", backend["name"])
            assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}


def _env(container: dict[str, Any]) -> dict[str, str | None]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def test_the_processes_listen_where_the_probes_and_services_look() -> None:
    api, hub = _container("pgwarden-api"), _container("pgwarden-hub")
    assert int(_env(api)["API_PORT"]) == api["ports"][0]["containerPort"]
    assert int(_env(hub)["WEBSOCKET_PORT"]) == hub["ports"][0]["containerPort"]
    config = Config(database_url="postgresql://pgwarden@db/pgwarden")
    api_routes = {route.path for route in create_api(config).router.routes}
    hub_routes = {route.path for route in create_hub(config).router.routes}
    assert {"alive", "api/version"} <= api_routes
    assert "alive" in hub_routes
    assert api["readinessProbe"]["httpGet"]["path"] == hub["readinessProbe"]["httpGet"]["path"] == "/alive"
    assert api["livenessProbe"]["httpGet"]["path"] == "/api/version"  # needs no database
    assert "tcpSocket" in hub["livenessProbe"]


def test_every_setting_and_command_is_one_pgwarden_knows() -> None:
    settings = {name for name, _, _ in Config.reference()}
    config_map = _find("ConfigMap", "pgwarden")
    Config.from_env(config_map["data"])  # valid values, or ConfigError lists what is wrong
    assert set(config_map["data"]) <= settings
    job = _find("Job", "pgwarden-migrate")["spec"]["template"]["spec"]
    containers = [*job["initContainers"], *job["containers"], _container("pgwarden-api"), _container("pgwarden-hub")]
    for container in containers:
        command = container["command"]
        assert command[0] == "pgwarden"
        build_parser().parse_args(command[1:])  # exits on an unknown command or option
        # the settings, and the variable that grant-hub reads its password from
        assert set(_env(container)) <= settings | {"HUB_DATABASE_PASSWORD"}


def test_the_autoscaler_scales_the_api_by_the_cpu_it_requests() -> None:
    hpa = _find("HorizontalPodAutoscaler", "pgwarden-api")["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == ("Deployment", "pgwarden-api")
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert "cpu" in _container("pgwarden-api")["resources"]["requests"]
