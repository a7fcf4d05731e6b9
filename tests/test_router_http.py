"""The router's HTTP service: endpoints, errors with the field named, and schemathesis fuzzing from its OpenAPI spec."""

from __future__ import annotations

import http.client
import json
import threading

import gymnasium as gym
import pytest

import offload_env  # noqa: F401 - registers the envs
from offload_env.router import Router
from offload_env.router.http import MAX_BATCH, make_server, openapi_spec

pytest.importorskip("torch")
schemathesis = pytest.importorskip("schemathesis")

LAYER_SPLIT = "offload_env/LayerSplit-v0"


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    from agents.export import export
    from agents.registry import AGENTS
    from experiments.config import AgentConfig

    make_env = lambda: gym.make(LAYER_SPLIT)  # noqa: E731
    agent = AGENTS["maskable_ppo"].build(make_env, seed=0, name="ppo", settings=AgentConfig(
        algo="maskable_ppo", budget=64, hyperparams=dict(n_steps=64, batch_size=64)))
    agent.learn(None, 64)
    return Router.from_artifact(export(agent, tmp_path_factory.mktemp("art") / "a", env_id=LAYER_SPLIT))


@pytest.fixture(scope="module")
def server(router):
    srv = make_server(router, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def request_body():
    env = gym.make(LAYER_SPLIT)
    env.reset(seed=1)
    return env.unwrapped.router_request()


def _call(base: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, body, headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else None)


def test_decide_health_manifest(server, router, request_body):
    status, body = _call(server, "POST", "/decide", json.dumps(request_body).encode())
    assert status == 200 and body["ok"] and body["action"] == router.decide(request_body).action
    assert _call(server, "GET", "/health")[1]["status"] == "ok"
    assert _call(server, "GET", "/manifest")[1]["env"]["id"] == LAYER_SPLIT
    assert _call(server, "GET", "/openapi.json")[1]["openapi"].startswith("3.")


def test_batch_decides_each_request(server, request_body):
    bad = dict(request_body, deadline_s=-1)
    status, body = _call(server, "POST", "/decide/batch", json.dumps({"requests": [request_body, bad]}).encode())
    assert status == 200
    first, second = body["decisions"]
    assert first["ok"] and not second["ok"] and second["field"] == "deadline_s"


@pytest.mark.parametrize("method, path, body, status", [
    ("POST", "/decide", b"{not json", 400),
    ("POST", "/decide", b"[1, 2]", 400),
    ("POST", "/decide", b"\xff\xfe", 400),
    ("POST", "/decide", json.dumps({"prompt_tokens": 10}).encode(), 422),
    ("POST", "/decide/batch", json.dumps({"requests": 5}).encode(), 422),
    ("POST", "/decide/batch", json.dumps({"requests": [{}] * (MAX_BATCH + 1)}).encode(), 413),
    ("GET", "/decide", None, 405),
    ("DELETE", "/health", None, 405),
    ("GET", "/nowhere", None, 404),
])
def test_malformed_requests_get_a_4xx_naming_the_problem(server, method, path, body, status):
    got, answer = _call(server, method, path, body)
    assert got == status
    assert answer["error"]


def test_a_field_error_names_the_field_and_carries_the_safe_default(server, router, request_body):
    status, body = _call(server, "POST", "/decide", json.dumps(dict(request_body, prompt_tokens="x")).encode())
    assert status == 422 and body["field"] == "prompt_tokens"
    assert body["decision"]["action"] == router.safe_default and body["decision"]["ok"] is False


def test_too_large_a_body_is_refused(server):
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/decide")
    conn.putheader("Content-Length", str(10 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_the_service_survives_a_client_that_hangs_up(server, request_body):
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/decide")
    conn.putheader("Content-Length", "1000")
    conn.endheaders()
    conn.send(b"{")
    conn.close()
    status, _ = _call(server, "POST", "/decide", json.dumps(request_body).encode())
    assert status == 200


@pytest.mark.parametrize("path, method", [("/decide", "POST"), ("/decide/batch", "POST"), ("/health", "GET"),
                                          ("/manifest", "GET"), ("/openapi.json", "GET")])
def test_api_conforms_to_its_openapi_spec(router, server, path, method):
    """Every generated request (valid and not) gets a documented, well-formed answer, never a 5xx (all checks)."""
    from hypothesis import HealthCheck, given, settings

    operation = schemathesis.openapi.from_dict(openapi_spec(router))[path][method]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case):
        case.call_and_validate(base_url=server)

    check()


def test_a_quality_router_service_documents_and_checks_topic_and_cost_weight(tmp_path):
    """The request schema lists the fields the policy reads besides the observation; fuzzing finds no 5xx and
    no undocumented answer; a request valid by the schema is decided."""
    from hypothesis import HealthCheck, given, settings

    from agents.bandit_agent import BanditAgent

    make_env = lambda: gym.make("offload_env/Routing-v0")  # noqa: E731
    agent = BanditAgent("quality_router", make_env, seed=0)
    agent.learn(make_env, 200)
    quality = Router.from_artifact(agent.export(tmp_path / "q", env_id="offload_env/Routing-v0"))
    spec = openapi_spec(quality)
    request = spec["components"]["schemas"]["Request"]
    for variant in request.get("anyOf", [request]):
        assert "topic" in variant["required"] and {"topic", "cost_weight"} <= set(variant["properties"])
    srv = make_server(quality, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        env = make_env()
        env.reset(seed=3)
        body = env.unwrapped.router_request()
        for topic in (body["topic"], env.unwrapped.topic_names[body["topic"]]):
            status, answer = _call(base, "POST", "/decide", json.dumps({**body, "topic": topic,
                                                                        "cost_weight": 0.0}).encode())
            assert status == 200 and answer["ok"], answer
        operation = schemathesis.openapi.from_dict(spec)["/decide"]["POST"]

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(base_url=base)

        check()
    finally:
        srv.shutdown()
        srv.server_close()


_SERVE_LIGHT = """
import sys, importlib.abc
BANNED = {"torch", "stable_baselines3", "sb3_contrib", "numba", "pandas", "matplotlib"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError(f"the router must not import {name}")
sys.meta_path.insert(0, Block())
from offload_env.cli import main
sys.exit(main(["serve", sys.argv[1], "--port", "0"]))
"""


def test_offload_env_serve_runs_without_the_heavy_stack(router, tmp_path, request_body):
    import subprocess
    import sys

    script = tmp_path / "serve.py"
    script.write_text(_SERVE_LIGHT)
    proc = subprocess.Popen([sys.executable, str(script), str(router.artifact.path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving maskable_ppo"), proc.stderr.read() if proc.poll() is not None else line
        base = line.split(" on ")[1].split()[0]
        status, body = _call(base, "POST", "/decide", json.dumps(request_body).encode())
        assert status == 200 and body["ok"]
    finally:
        proc.terminate()
        proc.wait(10)
