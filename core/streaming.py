"""Streamed responses under ASGI: Django serves a streaming response over ASGI by iterating it
asynchronously; one holding a synchronous iterator (a FileResponse, WhiteNoise's static files) is read whole
into memory first and warns "StreamingHttpResponse must consume synchronous iterators" on every request.
``asgi_streaming`` hands such a response an asynchronous iterator that reads it chunk by chunk in a thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import whitenoise.middleware
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase

CHUNK = 64 * 1024
_END = object()


async def _chunks(iterable: Iterable[bytes]) -> AsyncIterator[bytes]:
    iterator = iter(iterable)
    step = sync_to_async(next, thread_sensitive=False)
    while (chunk := await step(iterator, _END)) is not _END:
        yield chunk  # type: ignore[misc]


def asgi_streaming(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Under ASGI, make a synchronously streamed ``response`` asynchronous (same bytes, same closers);
    under WSGI and for other responses, ``response`` unchanged."""
    if isinstance(request, ASGIRequest) and response.streaming and not response.is_async:
        if hasattr(response, "block_size"):
            response.block_size = max(int(response.block_size), CHUNK)  # FileResponse reads lazily
        response.streaming_content = _chunks(response.streaming_content)
    return response


class WhiteNoiseMiddleware(whitenoise.middleware.WhiteNoiseMiddleware):
    """WhiteNoise whose static files stream asynchronously under ASGI."""

    @staticmethod
    def serve(static_file, request):  # noqa: ANN001, ANN205 - WhiteNoise's signature
        return asgi_streaming(request, whitenoise.middleware.WhiteNoiseMiddleware.serve(static_file, request))
