"""docs/deploy.md: its YAML blocks parse, and the Kubernetes example fits the app it deploys —
the probes hit real routes of ``voicekit.serve.app`` (served by uvicorn) on the container's port,
the container's arguments are options ``voicekit serve`` accepts, the grace period covers the
``preStop`` pause and the drain deadline, and the Service and Ingress point at the pods."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from servers.serving import serving

import voicekit as vk
import voicekit.serve
from voicekit.cli import serve as serve_cli

DOC = Path(__file__).parent.parent / "docs" / "deploy.md"
UVICORN_SHUTDOWN = 5  # voicekit serve gives uvicorn 5 s to close after the drain


def yaml_documents() -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert blocks, "docs/deploy.md has no YAML block"
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc is not None]


def of_kind(kind: str) -> dict[str, Any]:
    (document,) = [d for d in yaml_documents() if d.get("kind") == kind]
    return document


def container() -> dict[str, Any]:
    (spec,) = of_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return spec


def serve_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicekit", exit_on_error=False)
    serve_cli.add_parser(parser.add_subparsers(dest="command"))
    spec = container()
    assert spec["command"] == ["voicekit"]  # exec form: voicekit is PID 1 and gets SIGTERM
    return parser.parse_args(spec["args"])


def test_every_yaml_block_parses_into_kubernetes_objects():
    documents = yaml_documents()
    assert {d["kind"] for d in documents} == {"Deployment", "Service", "Ingress"}
    assert all(d.get("apiVersion") and d.get("metadata", {}).get("name") for d in documents)


def test_the_container_runs_voicekit_serve_with_options_it_accepts():
    options = serve_options()
    assert options.command == "serve" and options.carrier == "twilio"
    assert options.host == "0.0.0.0" and options.workers >= 1
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports["http"] == options.port


def test_the_grace_period_covers_prestop_and_the_drain_deadline():
    options = serve_options()
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    pause = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = float(pause[1]) + options.drain_timeout + UVICORN_SHUTDOWN
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_the_probes_use_the_container_port_and_paths_the_app_serves():
    spec = container()
    probes = {name: spec[name]["httpGet"] for name in ("readinessProbe", "livenessProbe",
                                                       "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    names = {p["name"] for p in spec["ports"]}
    assert all(probe["port"] in names for probe in probes.values())


@pytest.fixture
def twilio_token(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "a-token-for-the-docs-test")


async def test_the_probe_paths_answer_on_the_app_they_deploy(twilio_token):
    options = serve_options()
    paths = {container()[name]["httpGet"]["path"] for name in ("readinessProbe",
                                                                "livenessProbe",
                                                                "startupProbe")}
    application = vk.serve.app(lambda call: None, carrier=options.carrier,  # type: ignore[arg-type]
                               public_url=options.public_url, max_calls=options.max_calls)
    async with serving(application) as host, httpx.AsyncClient() as http:
        for path in sorted(paths):
            answer = await http.get(f"http://{host}{path}")
            assert answer.status_code == 200, path
        application.state.voicekit.draining = True  # what SIGTERM does
        assert (await http.get(f"http://{host}/readyz")).status_code == 503
        assert (await http.get(f"http://{host}/healthz")).status_code == 200


def test_the_service_and_ingress_lead_to_the_pods():
    deployment, service, ingress = (of_kind(k) for k in ("Deployment", "Service", "Ingress"))
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container()["ports"]}
    backends = [path["backend"]["service"] for rule in ingress["spec"]["rules"]
                for path in rule["http"]["paths"]]
    assert backends and all(b["name"] == service["metadata"]["name"] for b in backends)
    assert all(b["port"]["name"] == port["name"] for b in backends)
    annotations = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):  # a call outlives 60 s defaults
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600
    assert ingress["spec"]["tls"]  # carriers connect only to publicly trusted TLS
