"""docker-compose.yml is valid, requires a token, keeps model keys out of the sandbox service, and its
`scale` profile puts stateless tool-rag replicas behind HAProxy with PostgreSQL (pgvector)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.http_process import environment, free_port, start

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CFG = REPO / "servers" / "rag" / "haproxy.cfg"
SCALE_SERVICES = {"postgres", "tool-rag-replica", "tool-rag-lb"}
TOKEN_DIGEST = "sha256:" + "ab" * 32

needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="Debian's docker-compose is not installed (.ci/run installs it)")


def _compose(*args: str, token: str | None = TOKEN_DIGEST) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_API_KEY": "sk-compose-leak-check", "TOOLSUITE_REASONING_MODEL": "m"}
    env.pop("TOOLSUITE_HTTP_TOKENS", None)
    if token is not None:
        env["TOOLSUITE_HTTP_TOKENS"] = token
    # The committed example, not a developer's own .env, so the tests see the same thing everywhere.
    return subprocess.run(["docker-compose", "--env-file", str(REPO / ".env.example"),
                           "-f", str(REPO / "docker-compose.yml"), *args],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=60)


def _config(*profile: str) -> dict[str, Any]:
    out = _compose(*profile, "config")
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@needs_compose
def test_compose_file_is_valid_with_one_service_per_server():
    from servers.registry import SERVERS

    assert _compose("config", "-q").returncode == 0
    assert _compose("--profile", "scale", "config", "-q").returncode == 0
    services = _config()["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {e.name for e in SERVERS}
    for entry in SERVERS:
        service = services[entry.name]
        assert f"127.0.0.1:{entry.port}:{entry.port}" in str(service["ports"])
        assert f"127.0.0.1:{entry.port}/healthz" in str(service["healthcheck"])
        assert any(v.startswith("toolsuite-cache:/cache") for v in service["volumes"])
        assert any(str(v).endswith("/data:ro") for v in service["volumes"])
        env = service["environment"]
        # Bound to 0.0.0.0 in the container, so every server is given the token (here its digest).
        assert env["TOOLSUITE_HTTP_TOKENS"] == TOKEN_DIGEST
        assert env["TOOLSUITE_HTTP_PUBLIC_URL"] == f"http://127.0.0.1:{entry.port}/mcp"


@needs_compose
def test_compose_refuses_to_start_servers_without_a_token():
    out = _compose("config", "-q", token=None)
    assert out.returncode != 0 and "TOOLSUITE_HTTP_TOKENS" in out.stderr and ".env" in out.stderr
    example = (REPO / ".env.example").read_text()
    assert re.search(r"(?m)^TOOLSUITE_HTTP_TOKENS=", example) and "toolsuite token" in example


@needs_compose
def test_sandbox_service_gets_no_model_keys():
    services = _config()["services"]
    assert "sk-compose-leak-check" not in str(services["tool-python"])
    assert "API_KEY" not in str(services["tool-python"])
    assert "sk-compose-leak-check" in str(services["tool-reasoning"])


@needs_compose
def test_scale_profile_runs_stateless_rag_replicas_behind_haproxy_with_postgres():
    config = _config("--profile", "scale")
    services = config["services"]
    for name in SCALE_SERVICES:
        assert services[name]["profiles"] == ["scale"]  # nothing of it starts with a plain `up`

    postgres = services["postgres"]
    assert postgres["image"].startswith("pgvector/pgvector:")
    assert "toolsuite-pgdata:/var/lib/postgresql/data" in str(postgres["volumes"])
    assert "toolsuite-pgdata" in config["volumes"]
    assert "pg_isready" in str(postgres["healthcheck"]["test"])
    assert "ports" not in postgres  # reachable only by the replicas
    assert list(postgres["networks"]) == ["toolsuite-db"] and config["networks"]["toolsuite-db"]["internal"]

    replica = services["tool-rag-replica"]
    assert replica["deploy"]["replicas"] >= 2
    command = replica["command"]
    assert command[0] == "tool-rag" and "--stateless" in command and command[command.index("--transport") + 1] == "http"
    env = replica["environment"]
    assert re.fullmatch(r"postgresql://toolsuite:[^@]+@postgres:5432/toolsuite", env["TOOLSUITE_RAG_STORE"])
    assert env["OMP_NUM_THREADS"] == "1"  # one BLAS thread per replica: the replicas use the cores
    assert env["TOOLSUITE_HTTP_TOKENS"] == TOKEN_DIGEST
    assert env["TOOLSUITE_HTTP_PUBLIC_URL"] == "http://127.0.0.1:8100/mcp"
    assert "ports" not in replica and "container_name" not in replica  # callers go through the balancer
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in str(replica["healthcheck"])

    balancer = services["tool-rag-lb"]
    assert balancer["image"].startswith("haproxy:")
    assert "127.0.0.1:8100:8100" in str(balancer["ports"])
    assert "servers/rag/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg" in str(balancer["volumes"])
    assert set(balancer["networks"]) == {"toolsuite-scale"}  # the balancer cannot reach the database

    # tool-python's sandboxes live in one machine's sandbox service: never behind a round-robin balancer.
    cfg = HAPROXY_CFG.read_text()
    assert "tool-python" not in cfg and "tool-rag-replica:8101" in cfg
    assert re.search(r"(?m)^\s*http-check send meth GET uri /healthz$", cfg)


# --- HAProxy, for real (Debian's haproxy) -------------------------------------------------------

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="Debian's haproxy is not installed")


@needs_haproxy
def test_haproxy_config_is_valid():
    out = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def _loopback_variant(tmp_path: Path, port: int, replicas: list[int]) -> Path:
    """The committed config with Docker's DNS replaced by fixed loopback servers; all else kept."""
    cfg = HAPROXY_CFG.read_text()
    cfg = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S)", "", cfg)
    cfg = cfg.replace(" resolvers docker resolve-prefer ipv4 init-addr none", "")
    cfg = cfg.replace("bind :8100", f"bind 127.0.0.1:{port}")
    servers = "\n".join(f"    server r{i} 127.0.0.1:{p}" for i, p in enumerate(replicas))
    cfg = re.sub(r"(?m)^    server-template .*$", servers, cfg)
    cfg = cfg.replace("log stdout format raw local0 info", "log stderr format raw local0 info")
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    return path


@needs_haproxy
def test_haproxy_hands_a_call_a_busy_replica_refused_to_another(tmp_path):
    token = "k" * 40
    log = tmp_path / "ran.log"
    log.touch()
    env = environment(SLOW_LOG=str(log), TOOLSUITE_HTTP_TOKENS=token, TOOLSUITE_MAX_CONCURRENT_CALLS="1",
                      TOOLSUITE_MAX_QUEUED_CALLS="0")
    replicas = [start("tool-slow", tmp_path, "--stateless", env=env) for _ in range(2)]
    port = free_port()
    balancer = subprocess.Popen(["haproxy", "-db", "-f", str(_loopback_variant(tmp_path, port, [
        int(r.base.rsplit(":", 1)[1]) for r in replicas]))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json",
               "authorization": f"Bearer {token}"}

    def call(url: str, tag: str, seconds: float, timeout: float = 30) -> httpx.Response:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "slow", "arguments": {"tag": tag, "seconds": seconds}}}
        return httpx.post(url, json=body, headers=headers, timeout=timeout)

    try:
        front = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # both replicas pass the /healthz check
            try:
                if httpx.get(f"{front}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(1)
        assert httpx.post(f"{front}/mcp", json={}, headers={"accept": headers["accept"]}).status_code == 401

        hold = threading.Thread(target=call, args=(replicas[0].url, "held", 4))
        hold.start()  # replica 0 is full, behind the balancer's back
        time.sleep(0.5)
        assert call(replicas[0].url, "direct", 0).status_code == 503
        answers = [call(f"{front}/mcp", f"via-lb-{n}", 0) for n in range(6)]
        hold.join()
    finally:
        balancer.terminate()
        balancer.wait(10)
        for replica in replicas:
            replica.stop()
    assert [a.status_code for a in answers] == [200] * 6  # every call landed on the free replica
    ran = log.read_text().split()
    assert sorted(ran) == sorted(["held", *(f"via-lb-{n}" for n in range(6))])  # each ran once
    # HAProxy's log: calls first sent to the busy replica were redispatched (`+1` retries) after its 503.
    posts = [line for line in balancer.stderr.read().decode().splitlines() if '"POST /mcp' in line and " 200 " in line]
    assert len(posts) == 6 and any("/+1 " in line for line in posts), posts
