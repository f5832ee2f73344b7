"""The HTTP sender: one attempt of one request, translated into an ``AttemptResult``.

It sends exactly the bytes it is given (no re-encoding of the URL, no redirects followed, no
cookies kept), guards destinations (``guard``), and never raises for network trouble: every
aiohttp, socket, TLS or timeout error becomes an error class and a one-line message.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from callhook.delivery.guard import (
    GuardedResolver,
    Networks,
    RefusedDestination,
    literal_ip,
    refusal,
)
from callhook.domain.payloads import OutgoingRequest, Timeouts

#: bytes of the response body kept for the delivery log
SNIPPET_BYTES = 1024


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
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc.__cause__
    if isinstance(exc, RefusedDestination) or isinstance(cause, RefusedDestination):
        return "refused_destination", _one_line(str(cause or exc))
    # before invalid_url: a certificate error is also a ValueError
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return "tls_error", _one_line(f"TLS: {exc}")
    if isinstance(exc, InvalidTarget):
        return "invalid_url", _one_line(f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):  # its text would repeat the URL, query and all
        return "invalid_url", _one_line(f"invalid URL: {exc.description or 'malformed'}")
    if isinstance(exc, aiohttp.NonHttpUrlClientError | ValueError):
        return "invalid_url", "invalid URL"
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "connect_error", _one_line(f"cannot resolve {exc.host}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientOSError | OSError):
        return "connect_error", _one_line(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "protocol_error", "the receiver closed the connection without answering"
    return "protocol_error", _one_line(f"{type(exc).__name__}: {exc}")


class Sender:
    """Sends ``OutgoingRequest``s over one shared aiohttp session (``start`` .. ``close``)."""

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
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        #: URLs that passed ``_target`` (refusals raise, so they are never kept)
        self._targets: dict[str, URL] = {}
        #: aiohttp's timeout of each ``Timeouts`` seen (a handful: the default and overrides)
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        if self._session is not None:
            return
        self._resolver = GuardedResolver(self.allow, self._inner_resolver)
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": self.user_agent},
            auto_decompress=True,
            trust_env=False,
        )

    async def close(self) -> None:
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
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
        if self._session is None:
            raise RuntimeError("Sender.start() must be called before send()")
        started = time.perf_counter()
        try:
            url = self._target(request.url)
            async with self._session.request(
                request.method,
                url,
                data=request.body,
                headers=list(request.headers),
                allow_redirects=False,
                timeout=self._timeout(timeouts),
            ) as response:
                snippet, body_error = "", None
                if response.status != 204 and response.content_length != 0:
                    snippet, body_error = await _read_snippet(response)
                return AttemptResult(
                    status=response.status,
                    error_class=None,
                    error=body_error,
                    latency_ms=_since(started),
                    snippet=snippet,
                    retry_after=response.headers.get("Retry-After"),
                )
        except (TimeoutError, aiohttp.ClientError, OSError, InvalidTarget) as exc:
            error_class, message = classify(exc)
            latency = _since(started)
            if error_class == "timeout":
                limits = f"limits: connect {timeouts.connect:g} s, total {timeouts.total:g} s"
                message = f"{message} after {latency / 1000:.1f} s ({limits})"
            return AttemptResult(None, error_class, message, latency, "", None)

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            if len(self._timeouts) >= 256:
                self._timeouts.clear()
            timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
            self._timeouts[timeouts] = timeout
        return timeout

    def _target(self, raw: str) -> URL:
        """The URL, as given; refused when it names an unsafe IP address itself.

        aiohttp connects to literal IP hosts without asking the resolver, so they are
        checked here; host names are checked by ``GuardedResolver``. The answers for the
        URLs seen lately are kept (the same few URLs get most requests).
        """
        known = self._targets.get(raw)
        if known is not None:
            return known
        url = self._check_target(raw)
        if len(self._targets) >= 4096:
            self._targets.clear()
        self._targets[raw] = url
        return url

    def _check_target(self, raw: str) -> URL:
        try:
            url = URL(raw, encoded=True)
        except ValueError as exc:
            raise InvalidTarget(str(exc)) from None
        if url.scheme not in ("http", "https"):
            raise InvalidTarget("the scheme must be http or https")
        if not url.host:
            raise InvalidTarget("no host")
        ip = literal_ip(url.host)
        if ip is None and (":" in url.host or url.host.replace(".", "").isdigit()):
            # 127.1 or 2130706433: the system would read these as 127.0.0.1 unchecked
            raise InvalidTarget(f"{url.host} is not a canonical IP address")
        reason = None if ip is None else refusal(ip, self.allow)
        if reason is not None:
            raise RefusedDestination(url.host, [reason])
        return url


async def _read_snippet(response: aiohttp.ClientResponse) -> tuple[str, str | None]:
    """The first ``SNIPPET_BYTES`` of the body; trouble reading it does not undo the status."""
    data = bytearray()
    try:
        while len(data) < SNIPPET_BYTES:
            chunk = await response.content.read(SNIPPET_BYTES - len(data))
            if not chunk:
                break
            data += chunk
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        _, message = classify(exc)
        return data.decode("utf-8", errors="replace"), f"reading the response body: {message}"
    return data.decode("utf-8", errors="replace"), None


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
