"""One HTTP request at a time, with every limit a hostile server can push against.

The crawler shares one :class:`aiohttp.ClientSession` per process (connection
pooling, one DNS cache) and makes every request through :class:`Fetcher`, which
guarantees:

* redirects are never followed here (``allow_redirects=False``), so the engine
  checks each hop against scope, robots.txt and the address guard;
* the body is decompressed by this module, chunk by chunk, so the size limit
  applies to the decompressed bytes and a gzip bomb stops at ``max_body_bytes``;
* connect, read and total timeouts hold, and a server that trickles bytes slower
  than ``min_rate_bytes_s`` (after ``rate_grace_s``) is cut off as a timeout;
* every failure becomes a :class:`~crawler.errors.FetchError` whose ``kind`` is
  the page record's error class.

Retries live in :class:`RetryPolicy`; the engine applies them because a retry
must wait its turn with the host's politeness rules.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import ssl
import time
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from crawler.errors import BlockedAddressError, FetchError
from crawler.guard import AddressGuard, GuardedResolver
from crawler.options import CrawlOptions

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset(
    {429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524}
)
_CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    """A complete response: status, headers and the decompressed body."""

    url: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    elapsed_ms: int

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lower-case, or None when absent."""
        return _media_type(self.headers.get("Content-Type"))

    @property
    def location(self) -> str | None:
        """The Location header of a redirect, or None."""
        if self.status not in REDIRECT_STATUSES:
            return None
        value = self.headers.get("Location")
        if not value:
            return None
        if value.isascii() and " " not in value:
            return value
        # aiohttp decodes header bytes as UTF-8 with surrogateescape. Browsers
        # percent-encode a Location's raw bytes (Latin-1 included) and spaces,
        # so the same bytes are encoded here instead of being rejected.
        raw = value.strip().encode("utf-8", "surrogateescape")
        return urllib.parse.quote(raw, safe="!#$%&'()*+,/:;=?@[]~")


def _media_type(header: str | None) -> str | None:
    if not header:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def create_session(
    guard: AddressGuard, *, source_address: str | None = None
) -> aiohttp.ClientSession:
    """Create the process-wide client session whose connections the guard checks.

    ``source_address`` is the local IP address every connection is bound to
    (None lets the system choose).

    Cookies are not kept (``DummyCookieJar``) because one session serves every
    job in the process and one job's cookies must not reach another's requests.
    Concurrency limits are the engine's, so the connector sets none of its own.
    """
    connector = aiohttp.TCPConnector(
        limit=0,
        limit_per_host=0,
        resolver=GuardedResolver(guard),
        socket_factory=guard.socket_factory,
        ttl_dns_cache=300,
        local_addr=None if source_address is None else (source_address, 0),
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"Accept-Encoding": "gzip, deflate", "Accept": "*/*"},
    )


class Fetcher:
    """Makes single requests (no redirects, no retries) under a crawl's limits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        options: CrawlOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._options = options
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=options.connect_timeout_s,
            sock_read=options.read_timeout_s,
        )
        self._headers = {
            "User-Agent": options.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        }

    async def fetch(
        self, url: str, *, max_body_bytes: int | None = None, truncate: bool = False
    ) -> Response:
        """Request ``url`` once and read its body; raise FetchError on any failure.

        A body longer than ``max_body_bytes`` after decompression raises
        FetchError ``too_large``, unless ``truncate`` is set: then the first
        ``max_body_bytes`` are returned (robots.txt parsers read only a prefix).
        """
        limit = max_body_bytes or self._options.max_body_bytes
        started = self._clock()
        try:
            async with asyncio.timeout(self._options.total_timeout_s):
                async with self._session.get(
                    url,
                    allow_redirects=False,
                    timeout=self._timeout,
                    headers=self._headers,
                ) as resp:
                    try:
                        body = await self._read_body(url, resp, limit, truncate)
                    except FetchError as exc:
                        exc.status = resp.status
                        exc.content_type = _media_type(resp.headers.get("Content-Type"))
                        raise
                    headers = CIMultiDictProxy(CIMultiDict(resp.headers))
                    status = resp.status
        except aiohttp.ClientError as exc:
            # Before TimeoutError: aiohttp's read and connect timeouts are both.
            raise classify_client_error(url, exc) from exc
        except TimeoutError as exc:
            raise FetchError(
                url,
                "timeout",
                f"no complete response within {self._options.total_timeout_s:g} s "
                "(total_timeout_s)",
                retryable=True,
            ) from exc
        except BlockedAddressError as exc:
            raise FetchError(url, "blocked_address", str(exc)) from exc

        elapsed_ms = round((self._clock() - started) * 1000)
        return Response(
            url=url, status=status, headers=headers, body=body, elapsed_ms=elapsed_ms
        )

    async def _read_body(
        self, url: str, resp: aiohttp.ClientResponse, limit: int, truncate: bool
    ) -> bytes:
        length = resp.content_length
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        identity = encoding in ("", "identity")
        if length is not None and length > limit and identity and not truncate:
            raise FetchError(
                url,
                "too_large",
                f"Content-Length {length} exceeds max_body_bytes {limit}",
            )

        decoder = _BodyDecoder(url, encoding, limit)
        received = 0
        min_rate = self._options.min_rate_bytes_s
        grace = self._options.rate_grace_s
        body_started = self._clock()
        async for chunk in resp.content.iter_chunked(_CHUNK_SIZE):
            received += len(chunk)
            try:
                decoder.feed(chunk)
            except FetchError as exc:
                if truncate and exc.kind == "too_large":
                    return decoder.prefix()
                raise

            elapsed = self._clock() - body_started
            if min_rate and elapsed > grace and received / elapsed < min_rate:
                raise FetchError(
                    url,
                    "timeout",
                    f"server sent {received} bytes in {elapsed:.1f} s, slower than "
                    f"min_rate_bytes_s {min_rate}",
                    retryable=False,
                )
        return decoder.finish()


class _BodyDecoder:
    """Decompresses a body incrementally and enforces the size limit on the output."""

    def __init__(self, url: str, encoding: str, limit: int) -> None:
        self._url = url
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self._encoding = encoding
        self._decompressor: zlib._Decompress | None
        if encoding in ("", "identity"):
            self._decompressor = None
        elif encoding in ("gzip", "x-gzip"):
            self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            # Servers disagree on whether "deflate" has a zlib header; wbits=47
            # does not cover raw deflate, so the first two bytes decide.
            self._decompressor = zlib.decompressobj(zlib.MAX_WBITS)
        else:
            raise FetchError(
                url, "decode", f"unsupported Content-Encoding {encoding!r}"
            )
        self._raw_fallback = encoding == "deflate"
        # The bytes fed while the deflate header is undecided, replayed on fallback.
        self._zlib_header = b""
        self._received = 0

    def feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._decompressor is None:
            self._append(chunk)
            return
        data = chunk
        while data:
            data = self._inflate(data)

    def _inflate(self, data: bytes) -> bytes:
        """Inflate what the limit allows of ``data``; return the unread rest."""
        assert self._decompressor is not None
        room = self._limit - self._size + 1
        try:
            output = self._decompressor.decompress(data, room)
        except zlib.error as exc:
            if self._raw_fallback:
                self._raw_fallback = False
                self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._zlib_header + data
            raise FetchError(
                self._url, "decode", f"invalid {self._encoding} body: {exc}"
            ) from exc
        if self._raw_fallback:
            # zlib checks its two-byte header as soon as both bytes arrive.
            self._zlib_header += data[:2]
            self._raw_fallback = len(self._zlib_header) < 2
        self._append(output)

        if self._decompressor.unconsumed_tail:
            return self._decompressor.unconsumed_tail
        if self._decompressor.eof and self._decompressor.unused_data:
            # A second gzip member follows the first (concatenated gzip files).
            rest = self._decompressor.unused_data
            self._decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return rest
        return b""

    def _append(self, data: bytes) -> None:
        self._size += len(data)
        if data:
            self._parts.append(data)
        if self._size > self._limit:
            raise FetchError(
                self._url,
                "too_large",
                f"body exceeds max_body_bytes {self._limit} after decompression",
            )

    def prefix(self) -> bytes:
        """Return the first ``limit`` decompressed bytes received so far."""
        return b"".join(self._parts)[: self._limit]

    def finish(self) -> bytes:
        if self._decompressor is not None:
            try:
                self._append(self._decompressor.flush())
            except zlib.error as exc:
                raise FetchError(
                    self._url, "decode", f"invalid {self._encoding} body: {exc}"
                ) from exc
            # An empty body (a redirect, say) is fine with any Content-Encoding.
            if not self._decompressor.eof and self._size == 0 and self._received:
                raise FetchError(
                    self._url, "decode", f"truncated or invalid {self._encoding} body"
                )
        return b"".join(self._parts)


def _describe(exc: BaseException) -> str:
    """Return the exception's message, or its type when the message is empty."""
    return str(exc) or type(exc).__name__


def classify_client_error(url: str, exc: aiohttp.ClientError) -> FetchError:
    """Map an aiohttp exception to the FetchError kind stored on page records."""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, BlockedAddressError) or (
        os_error is not None and "blocked by the address guard" in str(os_error)
    ):
        return FetchError(url, "blocked_address", str(os_error))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError(url, "dns", f"DNS lookup failed: {os_error or exc}")
    if isinstance(
        exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError
    ):
        return FetchError(url, "tls", f"TLS handshake failed: {exc}")
    if isinstance(os_error, ssl.SSLError):
        return FetchError(url, "tls", f"TLS failed: {os_error}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError(
            url,
            "connect",
            f"connection failed: {_describe(os_error or exc)}",
            retryable=True,
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return FetchError(
            url, "timeout", "connect timed out (connect_timeout_s)", retryable=True
        )
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return FetchError(
            url, "timeout", "read timed out (read_timeout_s)", retryable=True
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return FetchError(
            url, "decode", f"invalid response body: {exc}", retryable=True
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return FetchError(url, "connect", f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return FetchError(url, "connect", f"connection lost: {exc}", retryable=True)
    if isinstance(exc, aiohttp.ClientResponseError):
        return FetchError(url, "decode", f"malformed HTTP response: {exc.message}")
    return FetchError(url, "connect", f"{type(exc).__name__}: {exc}", retryable=True)


def describe_status(status: int) -> str:
    """Return ``"HTTP 404 Not Found"`` style text for a status code."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Return the seconds a Retry-After header asks for, or None if absent or invalid.

    Both forms of RFC 9110 are accepted: delay-seconds and an HTTP-date.
    """
    if not value:
        return None
    value = value.strip()
    # isascii: str.isdigit also accepts digits such as "²" that float() rejects.
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter."""

    max_retries: int
    base_s: float
    max_s: float
    rng: random.Random | None = None

    @classmethod
    def from_options(
        cls, options: CrawlOptions, rng: random.Random | None = None
    ) -> RetryPolicy:
        return cls(
            options.max_retries, options.backoff_base_s, options.backoff_max_s, rng
        )

    def backoff_s(self, attempt: int) -> float:
        """Return the wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_s, self.base_s * (2 ** (attempt - 1)))
        uniform = self.rng.uniform if self.rng is not None else random.uniform
        # Half fixed, half random: spreads retries out yet never retries at once.
        return float(ceiling / 2 + uniform(0, ceiling / 2))

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        return status in RETRYABLE_STATUSES
