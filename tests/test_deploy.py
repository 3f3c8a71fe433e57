"""The deployment files, checked without a container engine: the compose file parses
and names only documented variables, the Dockerfile runs the README's commands, and
the Grafana dashboard asks only for metrics Ferryman exports."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from ferryman.config.settings import Settings
from ferryman.observability import metrics

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
DASHBOARD: dict[str, Any] = json.loads(
    (ROOT / "deploy/grafana/dashboards/ferryman.json").read_text(encoding="utf-8")
)


def section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end]


def instructions(name: str) -> list[str]:
    """The Dockerfile's instructions of one kind, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[len(name) + 1 :].strip() for line in joined.splitlines() if line.startswith(name)]


def test_compose_runs_two_instances_on_one_database_and_one_redis() -> None:
    services = COMPOSE["services"]
    instances = [name for name in services if name.startswith("ferryman-")]
    assert len(instances) == 2
    envs = [services[name]["environment"] for name in instances]
    assert envs[0] == envs[1]  # one fleet: the same database, Redis and secrets
    assert envs[0]["FERRYMAN_DATABASE_URL"].startswith("postgresql://ferryman:")
    assert envs[0]["FERRYMAN_DATABASE_URL"].endswith("@postgres:5432/ferryman")
    assert envs[0]["FERRYMAN_REDIS_URL"] == "redis://redis:6379/0"
    for secret in ("FERRYMAN_SECRET_KEY", "FERRYMAN_KEY_PEPPER", "FERRYMAN_ENCRYPTION_KEYS"):
        assert envs[0][secret].startswith(f"${{{secret}:?")  # required, from .env
    for name in instances:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        volumes = services[name]["volumes"]
        assert any(v.endswith(":/var/lib/ferryman/data") for v in volumes)
        assert services[name]["build"] == "."
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    for name in ("postgres", "redis", *instances):
        assert "profiles" not in services[name]


def test_compose_names_only_variables_the_readme_documents() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_TEXT))
    for service in COMPOSE["services"].values():
        used |= {k for k in service.get("environment", {}) if k.startswith("FERRYMAN_")}
    assert {"POSTGRES_PASSWORD", "FERRYMAN_SECRET_KEY", "FERRYMAN_GATEWAY_FILE"} <= used
    containers = section("### Containers")
    table = section("### Process settings (environment)")
    for name in sorted(used):
        assert f"`{name}`" in containers or f"`{name}`" in table, name
    # The settings it passes are Ferryman's own (a typo would be silently ignored).
    fields = {f"FERRYMAN_{field.upper()}" for field in Settings.model_fields}
    assert {n for n in used if n.startswith("FERRYMAN_")} - fields == {"FERRYMAN_GATEWAY_FILE"}
    # The .env template lists every variable compose takes from it.
    template = (ROOT / "deploy/compose.env").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z_]+)=", template, re.M))
    assert set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_TEXT)) <= listed


def test_the_dockerfile_runs_the_readmes_commands_as_an_unprivileged_user() -> None:
    containers = section("### Containers")
    [install] = [run for run in instructions("RUN") if run.startswith("pip install")]
    assert f"\n{install}\n" in containers
    [cmd] = instructions("CMD")
    assert f"`{shlex.join(json.loads(cmd))}`" in containers
    [user] = instructions("USER")
    assert user == "ferryman" and "uid 10001" in containers
    assert "--uid 10001" in DOCKERFILE
    assert 'VOLUME ["/var/lib/ferryman/data"]' in DOCKERFILE
    assert "FERRYMAN_DATA_DIR=/var/lib/ferryman/data" in DOCKERFILE
    [health] = instructions("HEALTHCHECK")
    assert "http://127.0.0.1:8080/health/live" in health and "`/health/live`" in containers
    assert "PIP_CONSTRAINT=/src/constraints.txt" in DOCKERFILE  # what CI tested


def test_prometheus_and_grafana_are_wired_to_the_instances_and_the_dashboard() -> None:
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    [job] = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = set(job["static_configs"][0]["targets"])
    instances = {n for n in COMPOSE["services"] if n.startswith("ferryman-")}
    assert targets == {f"{name}:8080" for name in instances}
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    uids = {
        target["datasource"]["uid"]
        for panel in DASHBOARD["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {datasource["uid"]}
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/ferryman.yaml").read_text()
    )["providers"][0]
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


def exported() -> set[str]:
    """Every sample name Ferryman's metrics module can export."""
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, tuple) and value and str(value[0]).startswith("ferryman_"):
            base = value[0]
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def test_the_dashboard_asks_only_for_metrics_ferryman_exports() -> None:
    exprs = [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]
    asked = {name for expr in exprs for name in re.findall(r"\bferryman_[a-z_]+", expr)}
    assert asked and asked <= exported(), asked - exported()
    # Every area the README promises has a panel.
    titles = " ".join(panel["title"] for panel in DASHBOARD["panels"]).lower()
    for area in ("requests", "errors", "duration", "429", "budget", "breaker", "keys", "usage"):
        assert area in titles, area
