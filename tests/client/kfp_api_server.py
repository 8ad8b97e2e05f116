"""A small HTTP server speaking the KFP v2beta1 routes that kfp.Client uses to create and follow runs.

It keeps experiments and runs in memory, records every request (method, path, query, JSON body) and
answers a run's state from a scripted sequence (e.g. RUNNING, RUNNING, SUCCEEDED), so the client's
real request bodies can be checked and ``--wait`` can be followed to a final state.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


class KfpApiServer:
    """Start with ``with KfpApiServer(states=[...]) as server: server.url``."""

    def __init__(self, states: list[str] | None = None):
        self.states = list(states or ["RUNNING", "SUCCEEDED"])
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> KfpApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def posted(self, path: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == PREFIX + path]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: dict | None) -> tuple[str, dict]:
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                server.requests.append({"method": self.command, "path": parsed.path, "query": query, "body": body})
                return parsed.path, query

            def do_GET(self):
                path, query = self._record(None)
                if path == PREFIX + "/healthz":
                    return self._reply(200, {"multi_user": False})
                if path == PREFIX + "/experiments":
                    predicates = json.loads(query.get("filter") or "{}").get("predicates", [])
                    names = {p["stringValue"] for p in predicates if p.get("key") == "display_name"}
                    found = [e for e in server.experiments.values() if not names or e["display_name"] in names]
                    return self._reply(200, {"experiments": found, "total_size": len(found)})
                if path.startswith(PREFIX + "/experiments/"):
                    exp = server.experiments.get(path.rsplit("/", 1)[1])
                    return self._reply(200, exp) if exp else self._reply(404, {"error": "no such experiment"})
                if path.startswith(PREFIX + "/runs/"):
                    run_id = path.rsplit("/", 1)[1]
                    if run_id not in server.runs:
                        return self._reply(404, {"error": f"no run {run_id}"})
                    i = server.polls[run_id] = server.polls.get(run_id, -1) + 1
                    state = server.states[min(i, len(server.states) - 1)]
                    return self._reply(200, {**server.runs[run_id], "state": state})
                return self._reply(404, {"error": f"unknown route {path}"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path, _ = self._record(body)
                if path == PREFIX + "/experiments":
                    exp = {"experiment_id": str(uuid.uuid4()), "display_name": body.get("display_name"), "namespace": body.get("namespace")}
                    server.experiments[exp["experiment_id"]] = exp
                    return self._reply(200, exp)
                if path == PREFIX + "/runs":
                    if "pipeline_spec" not in body or "experiment_id" not in body:
                        return self._reply(400, {"error": "a run needs pipeline_spec and experiment_id"})
                    run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                    server.runs[run["run_id"]] = run
                    return self._reply(200, run)
                return self._reply(404, {"error": f"unknown route {path}"})

        return Handler
