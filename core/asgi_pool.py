"""Django under ASGI with the API's sync views run whole on a fixed pool of threads that keep their database
connections (issue 13: paper orders/s).

Django's own ASGI handler gives every request a thread of its own (``ThreadSensitiveContext``) and hops
between the event loop and a thread for each sync-only middleware; the thread dies with the request, so its
database connection is opened (SQLite: file, pragmas; MariaDB: a TCP handshake) and closed every time.
For the paths in ``WEB_SYNC_PATHS`` (the REST API by default, all sync views) this handler reads the body on
the event loop, then runs the sync middleware chain and the view in one hop on one of ``WEB_SYNC_THREADS``
threads. Those threads keep their connections for ``WEB_SYNC_CONN_MAX_AGE`` seconds, health-checked before
reuse; every other thread (pages, WebSockets, Django's per-request threads) keeps ``CONN_MAX_AGE`` as set,
since a connection left open on a thread that dies is never closed. Every other path goes to Django's
handler unchanged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


class PooledSyncASGIHandler(ASGIHandler):
    def __init__(self, *, paths: Sequence[str], threads: int, conn_max_age: int) -> None:
        super().__init__()
        self.paths = tuple(p for p in paths if p)
        self.conn_max_age = conn_max_age
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="django-sync", initializer=self._thread_init
        )

    def pooled(self, scope: dict[str, Any]) -> bool:
        return scope["type"] == "http" and bool(self.paths) and scope.get("path", "").startswith(self.paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.pooled(scope):
            await super().__call__(scope, receive, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:  # the client went away before sending its body
            return
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self._pool, self._respond, loop, scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await loop.run_in_executor(self._pool, response.close)
        finally:
            body_file.close()

    def _thread_init(self) -> None:
        """This thread's own copy of each database's settings: its connections outlive a request (and are
        health-checked before reuse) without changing them for any other thread."""
        for alias in connections:
            wrapper = connections[alias]
            wrapper.settings_dict = {
                **wrapper.settings_dict,
                "CONN_MAX_AGE": self.conn_max_age,
                "CONN_HEALTH_CHECKS": True,
            }

    def _respond(
        self, loop: asyncio.AbstractEventLoop, scope: dict[str, Any], body_file: Any
    ) -> HttpResponseBase:
        """The WSGI handler's steps, on a pool thread: request_started (closes connections past their age or
        broken), the sync middleware chain and view, then for a complete body request_finished too."""
        # What sync_to_async tells its thread: async_to_sync here (a push into the in-memory channel layer)
        # runs on the server's event loop, not on a new loop in a new thread per call (the layer's queues
        # belong to the server's loop, and a loop and thread per push cost ~1.4 ms).
        SyncToAsync.threadlocal.main_event_loop = loop
        SyncToAsync.threadlocal.main_event_loop_pid = os.getpid()
        SyncToAsync.threadlocal.task_context = None
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self._sync.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()  # the body is bytes already; request_finished runs here, on this thread
        return response
