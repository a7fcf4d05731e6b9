"""The router as an HTTP service (standard library only): JSON in, decision out.

| method, path | body | answers |
|---|---|---|
| ``POST /decide`` | one request object | 200 the decision; 422 a field missing or out of range (the safe default beside the error); 400 not a JSON object; 413 too large |
| ``POST /decide/batch`` | ``{"requests": [...]}`` (at most :data:`MAX_BATCH`) | 200 one decision per request (each with its own ``ok``); 400, 413, 422 as above |
| ``GET /health`` | | 200 ``{"status": "ok", ...}`` |
| ``GET /manifest`` | | 200 the artifact's manifest |
| ``GET /openapi.json`` | | 200 the OpenAPI 3.0 description of all of this |

Any other path is 404, another method 405. A handler that fails answers
500 and the server goes on; nothing a client sends stops the service.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .requests import _BIG
from .router import Router

__all__ = ["MAX_BODY", "MAX_BATCH", "openapi_spec", "make_server"]

MAX_BODY = 1 << 20  #: bytes of a request body
MAX_BATCH = 1024  #: requests of one batch


def _error_schema() -> dict:
    return {"type": "object", "required": ["error"],
            "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                           "decision": {"$ref": "#/components/schemas/Decision"}}}


def openapi_spec(router: Router) -> dict:
    """The OpenAPI 3.0 description of the service for ``router``'s artifact (every response documented)."""
    m = router.manifest
    n_obs = len(m["observation"]["names"])
    common: dict[str, Any] = {}
    if m["action"]["type"] == "discrete":
        common["action_mask"] = {"type": "array", "items": {"type": "integer", "enum": [0, 1]},
                                 "minItems": m["action"]["n"], "maxItems": m["action"]["n"],
                                 "description": "allowed actions (all 0: nothing is allowed, the answer is the safe default)"}
    if router.agents is not None:
        common["agent"] = {"type": "string", "enum": list(router.agents)}
    context = router.policy.context  # request fields the policy reads besides the observation
    if "topic" in context:
        n_topics = int(m["policy"].get("n_topics") or 0)
        names = list((m["observation"].get("router") or {}).get("topics") or [])
        choices = [{"type": "integer", "minimum": 0, "maximum": n_topics - 1}]
        if len(names) == n_topics:
            choices.append({"type": "string", "enum": names})
        common["topic"] = {"anyOf": choices, "description": "the query's topic: an index into the env's topics, "
                                                            "or its name"}
    if "cost_weight" in context:
        common["cost_weight"] = {"type": "number", "minimum": 0, "maximum": _BIG,
                                 "description": "the weight of cost at decision time (absent: the artifact's own)"}
    needed = ["topic"] if "topic" in context else []
    raw = {"type": "object", "required": ["observation", *needed], "properties": {
        "observation": {"type": "array", "items": {"type": "number"}, "minItems": n_obs, "maxItems": n_obs,
                        "description": "the env's observation vector (" + ", ".join(m["observation"]["names"][:12])
                        + (", ..." if n_obs > 12 else "") + ")"}, **common}}
    variants = [raw]
    fields = router.builder.fields
    if fields:
        props = {}
        for f in fields:
            number = {"type": "number", "minimum": f.low, "maximum": f.high}
            props[f.name] = ({**number, "description": f.doc} if not f.size else
                             {"type": "array", "items": number, "minItems": f.size, "maxItems": f.size,
                              "description": f.doc})
        variants.append({"type": "object", "required": [f.name for f in fields if f.default is None] + needed,
                         "properties": {**props, **common}})
    request_schema = {"anyOf": variants} if len(variants) > 1 else raw
    action = ({"type": "integer"} if m["action"]["type"] == "discrete"
              else {"type": "array", "items": {"type": "number"}})
    decision = {"type": "object", "required": ["action", "label", "ok"],
                "properties": {"action": action, "label": {"type": "string"}, "ok": {"type": "boolean"},
                               "agent": {"type": "string", "nullable": True}, "reason": {"type": "string"},
                               "error": {"type": "string"}, "field": {"type": "string"}}}
    err = {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    def errors(*codes: int) -> dict:
        text = {400: "the body is not a JSON object", 404: "unknown path", 405: "method not allowed",
                413: "the body is too large", 422: "a field is missing or out of range (named in 'field')",
                500: "an internal error (the server goes on)"}
        return {str(c): dict(err, description=text[c]) for c in codes}

    def ok(schema: dict, text: str) -> dict:
        return {"200": {"description": text, "content": {"application/json": {"schema": schema}}}}

    return {
        "openapi": "3.0.3",
        "info": {"title": "offload-env router", "version": str(m.get("project_version", "")),
                 "description": f"Decisions of the {m['agent'].get('algo')} policy for {m['env']['id']}."},
        "paths": {
            "/decide": {"post": {
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Request"}}}},
                "responses": {**ok({"$ref": "#/components/schemas/Decision"}, "the decision"),
                              **errors(400, 413, 422, 500)}}},
            "/decide/batch": {"post": {
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["requests"], "properties": {"requests": {
                        "type": "array", "maxItems": MAX_BATCH,
                        "items": {"$ref": "#/components/schemas/Request"}}}}}}},
                "responses": {**ok({"type": "object", "required": ["decisions"], "properties": {"decisions": {
                    "type": "array", "items": {"$ref": "#/components/schemas/Decision"}}}},
                    "one decision per request"), **errors(400, 413, 422, 500)}}},
            "/health": {"get": {"responses": {**ok({"type": "object"}, "the service is up"), **errors(500)}}},
            "/manifest": {"get": {"responses": {**ok({"type": "object"}, "the artifact's manifest"),
                                                **errors(500)}}},
            "/openapi.json": {"get": {"responses": {**ok({"type": "object"}, "this description"),
                                                    **errors(500)}}},
        },
        "components": {"schemas": {
            "Request": request_schema,
            "Decision": decision,
            "Error": _error_schema(),
        }},
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = "offload-env-router"
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries its Content-Length
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait for the peer's delayed ACK
    router: Router
    spec: dict
    quiet = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True  # the body's end is unknown: this connection cannot go on
            self._send(400, {"error": "Content-Length: expected a byte count"})
            return None
        if length > MAX_BODY:
            self.close_connection = True  # the body is not read
            self._send(413, {"error": f"body: at most {MAX_BODY} bytes, got {length}"})
            return None
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            self._send(400, {"error": f"body: not JSON ({type(err).__name__})"})
            return None
        if not isinstance(body, dict):
            self._send(400, {"error": "body: expected a JSON object"})
            return None
        return body

    def _guard(self, handler) -> None:
        try:
            handler()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as err:  # noqa: BLE001 - the service never dies on input
            try:
                self._send(500, {"error": f"internal: {type(err).__name__}"})
            except OSError:
                self.close_connection = True

    def do_GET(self) -> None:
        self._guard(self._get)

    def do_POST(self) -> None:
        self._guard(self._post)

    def _not_allowed(self) -> None:
        known = self.path in ("/decide", "/decide/batch", "/health", "/manifest", "/openapi.json")
        self._send(405 if known else 404, {"error": f"{self.command} {self.path}: "
                                                    + ("method not allowed" if known else "unknown path")})

    do_PUT = do_DELETE = do_PATCH = lambda self: self._guard(self._not_allowed)  # noqa: E731

    def _get(self) -> None:
        if self.path == "/health":
            m = self.router.manifest
            self._send(200, {"status": "ok", "env": m["env"]["id"], "algo": m["agent"].get("algo")})
        elif self.path == "/manifest":
            self._send(200, self.router.manifest)
        elif self.path == "/openapi.json":
            self._send(200, self.spec)
        else:
            self._not_allowed()

    def _post(self) -> None:
        if self.path not in ("/decide", "/decide/batch"):
            self._not_allowed()
            return
        body = self._body()
        if body is None:
            return
        if self.path == "/decide":
            d = self.router.decide(body)
            if not d.ok and d.error == "request":
                self._send(422, {"error": d.reason, "field": d.field, "decision": d.to_json()})
            else:
                self._send(200, d.to_json())
            return
        requests = body.get("requests")
        if not isinstance(requests, list):
            self._send(422, {"error": "requests: expected a list of request objects", "field": "requests"})
        elif len(requests) > MAX_BATCH:
            self._send(413, {"error": f"requests: at most {MAX_BATCH}, got {len(requests)}", "field": "requests"})
        else:
            self._send(200, {"decisions": [d.to_json() for d in self.router.decide_batch(requests)]})


def make_server(router: Router, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True
                ) -> ThreadingHTTPServer:
    """A threaded HTTP server for ``router`` (not started; ``port=0`` picks a free port)."""
    handler = type("RouterHandler", (_Handler,), {"router": router, "spec": openapi_spec(router), "quiet": quiet})
    server_class = type("RouterServer", (ThreadingHTTPServer,), {"request_queue_size": 128, "daemon_threads": True})
    return server_class((host, port), handler)
