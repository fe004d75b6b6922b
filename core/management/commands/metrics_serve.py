"""`manage.py metrics_serve`: serve this host's /metrics without a web process (a host running only
workers, beat or collector shards). It reads the same ``PROMETHEUS_MULTIPROC_DIR`` the host's processes
write, plus the broker and database figures (core/metrics.py)."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.core.management.base import BaseCommand

from core import metrics


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        body, content_type = metrics.metrics_render()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return


class Command(BaseCommand):
    help = "Serve /metrics for the processes of this host (PROMETHEUS_MULTIPROC_DIR) on --host:--port."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
        parser.add_argument("--port", type=int, default=9108)

    def handle(self, *args: Any, **opts: Any) -> None:
        server = ThreadingHTTPServer((opts["host"], opts["port"]), _Handler)
        self.stdout.write(f"metrics on http://{opts['host']}:{opts['port']}/metrics")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
