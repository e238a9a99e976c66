"""Outbound HTTP(S) from a processor, to the hosts its queue grants in
``allowed_outbound_hosts``; any other host is refused (``HttpError.denied``).

    from bullpen import http

    def process(job):
        response = http.post("https://hooks.example.com/x", json=job.data)
        if response.status >= 500:
            raise Exception(f"the hook answered {response.status}")
        return response.json()

Requests block until the answer is in (``process`` is a plain function
here); the queue's ``timeout`` bounds them with the rest of the attempt.
Underneath is ``wasi:http`` 0.2, as for the Rust SDK's ``http`` module.
"""

import json as _json
from urllib.parse import urlsplit

try:
    from componentize_py_types import Err, Ok
    from wit_world.imports import outgoing_handler, streams
    from wit_world.imports import wasi_http_types as wasi
except ImportError:
    # Outside a component (a unit test): there is no wasi:http to send
    # through, and `request` says so; a test replaces it (monkeypatch).
    wasi = None

_CHUNK = 4096


class HttpError(Exception):
    """A request that got no answer: refused by the queue's grants
    (``denied``), not sent, or failed on the way. The message names the URL."""

    def __init__(self, url: str, reason: str, denied: bool = False):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.denied = denied


class Response:
    """An answer: ``status``, ``headers`` (names in lower case, values
    joined with ``, ``), ``body`` (bytes), ``text`` and ``json()``."""

    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.body)


def _failed(url: str, code) -> HttpError:
    """The error for a wasi:http error code: a refusal by the grants says so."""
    if isinstance(code, wasi.ErrorCode_HttpRequestDenied):
        return HttpError(url, "refused: the queue does not grant this host (allowed_outbound_hosts)", True)
    name = type(code).__name__.removeprefix("ErrorCode_")
    words = "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
    detail = getattr(code, "value", None)
    return HttpError(url, f"{words} ({detail})" if detail not in (None, "") else words)


def request(method: str, url: str, headers=None, body=None, json=None, timeout=None) -> Response:
    """Sends a request and returns the answer. ``body`` is bytes or text;
    ``json`` a value sent as JSON with ``content-type: application/json``;
    ``timeout`` seconds to connect and to the first byte."""
    if wasi is None:
        raise HttpError(
            url,
            "no network outside a component: a unit test replaces bullpen.http.request (pytest's monkeypatch)",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HttpError(url, "not an http:// or https:// URL")
    headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    if json is not None:
        body = _json.dumps(json)
        headers.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    if body:
        # Sent whole, with its length (not chunked): what servers expect.
        headers.setdefault("content-length", str(len(body)))
    try:
        fields = wasi.Fields.from_list([(k, v.encode()) for k, v in headers.items()])
    except Err as e:
        raise HttpError(url, f"bad header: {type(e.value).__name__.removeprefix('HeaderError_')}") from None
    outgoing = wasi.OutgoingRequest(fields)
    verb = {
        "GET": wasi.Method_Get,
        "HEAD": wasi.Method_Head,
        "POST": wasi.Method_Post,
        "PUT": wasi.Method_Put,
        "DELETE": wasi.Method_Delete,
        "OPTIONS": wasi.Method_Options,
        "PATCH": wasi.Method_Patch,
    }.get(method.upper())
    outgoing.set_method(verb() if verb else wasi.Method_Other(method))
    outgoing.set_scheme(wasi.Scheme_Https() if parts.scheme == "https" else wasi.Scheme_Http())
    outgoing.set_authority(parts.netloc)
    outgoing.set_path_with_query((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    options = None
    if timeout is not None:
        options = wasi.RequestOptions()
        nanos = int(timeout * 1e9)
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
    outgoing_body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, options)
    except Err as e:
        raise _failed(url, e.value) from None
    with outgoing_body.write() as sink:
        data = body or b""
        for at in range(0, len(data), _CHUNK):
            sink.blocking_write_and_flush(data[at : at + _CHUNK])
    wasi.OutgoingBody.finish(outgoing_body, None)
    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    if not isinstance(answer, Ok):
        raise HttpError(url, "the response was already taken")
    if not isinstance(answer.value, Ok):
        raise _failed(url, answer.value.value)
    with answer.value.value as response:
        status = response.status()
        found = {}
        for name, value in response.headers().entries():
            text = value.decode("latin-1")
            found[name] = f"{found[name]}, {text}" if name in found else text
        chunks = []
        with response.consume() as incoming:
            with incoming.stream() as source:
                while True:
                    try:
                        chunks.append(source.blocking_read(65536))
                    except Err as e:
                        if isinstance(e.value, streams.StreamError_Closed):
                            break
                        raise HttpError(url, "the response body broke off") from None
    return Response(status, found, b"".join(chunks))


def get(url: str, **kwargs) -> Response:
    """A ``GET`` request: see :func:`request`."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs) -> Response:
    """A ``POST`` request: see :func:`request`."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs) -> Response:
    """A ``PUT`` request: see :func:`request`."""
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs) -> Response:
    """A ``DELETE`` request: see :func:`request`."""
    return request("DELETE", url, **kwargs)
