"""The deployment files (deploy/) name only settings and flags that exist, and stay consistent
with docs/deploy.md: a renamed setting breaks them here, not on a user's machine."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from modelport.config import SETTINGS, Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_VARS = {spec.env_var for spec in SETTINGS}
FLAGS = {spec.cli_flag for spec in SETTINGS if spec.flag}


def test_the_compose_file_sets_real_settings_that_load() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    servers = {name: s for name, s in compose["services"].items() if name.startswith("modelport")}
    assert len(servers) == 2
    for name, service in servers.items():
        env = service["environment"]
        unknown = {k for k in env if k.startswith("MODELPORT_") and k not in ENV_VARS}
        assert not unknown, f"{name}: unknown settings {unknown}"
        command = service["command"]
        assert all(arg in FLAGS for arg in command if arg.startswith("--")), command
        values = {k: re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "value", v) for k, v in env.items()}
        settings = Settings.load({}, environ=values)  # the values parse and validate
        assert settings.workers == 2 and settings.store_is_postgresql and settings.redis
        assert settings.artifacts_root == "/shared/artifacts"
    data_dirs = {s["command"][s["command"].index("--data-dir") + 1] for s in servers.values()}
    assert len(data_dirs) == 2, "each server needs its own data directory (and socket names)"
    for service in servers.values():
        assert {"artifacts:/shared/artifacts", "sockets:/run/modelport"} <= set(service["volumes"])


def test_haproxy_checks_readiness_of_both_servers() -> None:
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    assert "option httpchk GET /ready" in cfg
    assert re.findall(r"server \w+ (modelport-[ab]):8080", cfg) == ["modelport-a", "modelport-b"]


def test_the_systemd_unit_runs_serve_with_real_flags() -> None:
    unit = (DEPLOY / "modelport.service").read_text()
    [exec_start] = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start)
    assert argv[1] == "serve"
    assert all(arg in FLAGS for arg in argv if arg.startswith("--")), argv
    assert "KillMode=mixed" in unit and "KillSignal=SIGTERM" in unit
