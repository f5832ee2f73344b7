"""The HTTP sender: one attempt of one request, translated into an ``AttemptResult``.

It sends exactly the bytes it is given (no re-encoding of the URL, no redirects followed, no
cookies kept), guards destinations (``guard``), and never raises for network trouble: every
socket, TLS, protocol or timeout error becomes an error class and a one-line message. The
requests go through ``http1``, a lean HTTP/1.1 client (decision 0014).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from types import TracebackType

from aiohttp.abc import AbstractResolver
from yarl import URL

from callhook.delivery import http1
from callhook.delivery.guard import (
    GuardedResolver,
    Networks,
    RefusedDestination,
    literal_ip,
    refusal,
)
from callhook.domain.payloads import OutgoingRequest, Timeouts

#: bytes of the response body kept for the delivery log
SNIPPET_BYTES = http1.SNIPPET_BYTES


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt went: a status, or an error class and message."""

    status: int | None
    #: connect_error, timeout, refused_destination, tls_error, invalid_url or protocol_error
    error_class: str | None
    error: str | None
    latency_ms: float
    snippet: str
    #: the raw Retry-After header, if any
    retry_after: str | None


class InvalidTarget(ValueError):
    """The request's URL cannot be sent to; the message says why (without the URL)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def classify(exc: BaseException) -> tuple[str, str]:
    """The error class and a one-line message for an exception raised by an attempt."""
    if isinstance(exc, RefusedDestination):
        return "refused_destination", _one_line(str(exc))
    # before invalid_url: a certificate error is also a ValueError
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls_error", _one_line(f"TLS: {exc}")
    if isinstance(exc, InvalidTarget):
        return "invalid_url", _one_line(f"invalid URL: {exc}")
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, http1.ReceiverClosed | http1.BadAnswer):
        return "protocol_error", _one_line(str(exc))
    if isinstance(exc, ConnectionError):  # reset or cut while the request was out
        return "connect_error", _one_line(f"the connection broke: {exc.strerror or exc}")
    if isinstance(exc, OSError):
        return "connect_error", _one_line(str(exc))
    return "protocol_error", _one_line(f"{type(exc).__name__}: {exc}")


class Sender:
    """Sends ``OutgoingRequest``s over kept-alive connections (``start`` .. ``close``)."""

    def __init__(
        self,
        allow: Networks = (),
        user_agent: str = "callhook",
        *,
        limit: int = 200,
        limit_per_host: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.allow = allow
        self.user_agent = user_agent
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        self._inner_resolver = resolver
        self._client: http1.Client | None = None
        self._resolver: GuardedResolver | None = None
        #: URLs that passed ``_target`` (refusals raise, so they are never kept)
        self._targets: dict[str, http1.Target] = {}

    async def start(self) -> None:
        if self._client is not None:
            return
        self._resolver = GuardedResolver(self.allow, self._inner_resolver)
        self._client = http1.Client(
            self._resolver, self._ssl, limit=self._limit, limit_per_host=self._limit_per_host
        )

    async def close(self) -> None:
        client, resolver = self._client, self._resolver
        self._client = self._resolver = None
        if client is not None:
            await client.close()
        if resolver is not None:
            await resolver.close()

    async def __aenter__(self) -> Sender:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, request: OutgoingRequest, timeouts: Timeouts) -> AttemptResult:
        """One attempt; network trouble is reported in the result, never raised."""
        if self._client is None:
            raise RuntimeError("Sender.start() must be called before send()")
        started = time.perf_counter()
        try:
            where = self._target(request.url)
            answer = await self._client.request(
                request.method,
                where,
                request.headers,
                request.body,
                (timeouts.connect, timeouts.total),
            )
        except (OSError, ValueError) as exc:  # TimeoutError, ssl.SSLError: OSErrors
            error_class, message = classify(exc)
            latency = _since(started)
            if error_class == "timeout":
                limits = f"limits: connect {timeouts.connect:g} s, total {timeouts.total:g} s"
                message = f"{message} after {latency / 1000:.1f} s ({limits})"
            return AttemptResult(None, error_class, message, latency, "", None)
        body_error = answer.body_error
        return AttemptResult(
            status=answer.status,
            error_class=None,
            error=None if body_error is None else f"reading the response body: {body_error}",
            latency_ms=_since(started),
            snippet=answer.snippet.decode("utf-8", errors="replace"),
            retry_after=answer.retry_after,
        )

    def _target(self, raw: str) -> http1.Target:
        """The URL, as given; refused when it names an unsafe IP address itself.

        Literal IP hosts are connected to without a resolver, so they are checked here; host
        names are checked by ``GuardedResolver``. The answers for the URLs seen lately are
        kept (the same few URLs get most requests).
        """
        known = self._targets.get(raw)
        if known is not None:
            return known
        try:
            where = http1.target(self._check_target(raw))
        except UnicodeError:  # a host IDNA cannot write (a label over 63 characters, say)
            raise InvalidTarget("the host name cannot be written in ASCII (IDNA)") from None
        if len(self._targets) >= 4096:
            self._targets.clear()
        self._targets[raw] = where
        return where

    def _check_target(self, raw: str) -> URL:
        try:
            url = URL(raw, encoded=True)
        except ValueError as exc:
            raise InvalidTarget(str(exc)) from None
        if url.scheme not in ("http", "https"):
            raise InvalidTarget("the scheme must be http or https")
        if not url.host:
            raise InvalidTarget("no host")
        path = url.raw_path_qs
        if not path.isascii() or any(ch <= " " or ch == "\x7f" for ch in path):
            raise InvalidTarget(
                "the path or query has spaces, control characters or characters beyond ASCII "
                "(percent-encode them)"
            )
        ip = literal_ip(url.host)
        if ip is None and (":" in url.host or url.host.replace(".", "").isdigit()):
            # 127.1 or 2130706433: the system would read these as 127.0.0.1 unchecked
            raise InvalidTarget(f"{url.host} is not a canonical IP address")
        reason = None if ip is None else refusal(ip, self.allow)
        if reason is not None:
            raise RefusedDestination(url.host, [reason])
        return url


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
