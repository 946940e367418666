"""Fetch audio from an http(s) URL a client names, without letting it reach inside our network.

The host is resolved once, every address it resolves to is checked (loopback, private,
link-local, reserved, multicast, shared/CGNAT and cloud-metadata addresses are refused), and the
connection goes to a checked address, so a second DNS answer (rebinding) cannot switch the
target after the check. TLS still verifies the certificate for the host name. Redirects are
followed by hand, each hop checked the same way. Size and total time are capped.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse

REDIRECTS = (301, 302, 303, 307, 308)
# IPv6 prefixes whose last 32 bits are an IPv4 address a gateway may translate to.
_V4_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("::/96"))
METADATA = {"169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"}  # AWS, ECS, Alibaba, AWS v6


class UrlError(Exception):
    """The URL could not be fetched (400)."""

    code = "invalid_url"


class UrlRefused(UrlError):
    """The URL points somewhere the server will not go (400)."""

    code = "url_not_allowed"


class UrlTooLarge(UrlError):
    """The download is over the upload cap (413)."""

    code = "url_too_large"


def is_public(address: str) -> bool:
    """True for globally routable unicast addresses only (IPv6 wrappers of IPv4 are unwrapped)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if str(ip) in METADATA:
        return False
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and any(ip in net for net in _V4_EMBEDDING):  # NAT64 and v4-compatible
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


def fetch(url: str, max_bytes: int, timeout_s: float, allow_private: bool = False, max_redirects: int = 3) -> bytes:
    deadline = time.monotonic() + timeout_s
    for _ in range(max_redirects + 1):
        scheme, host, port, target = _split(url)
        addresses = _resolve(host, port)
        if not allow_private:
            refused = [a for a in addresses if not is_public(a)]
            if refused:
                raise UrlRefused(f"{host} resolves to a non-public address ({refused[0]}); the server only fetches public URLs")
        conn, sock, resp = _get(scheme, host, port, target, addresses, deadline)
        try:
            if resp.status in REDIRECTS and resp.getheader("Location"):
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                continue
            if resp.status != 200:
                raise UrlError(f"fetching the audio URL answered HTTP {resp.status}")
            return _read(resp, sock, max_bytes, deadline)
        finally:
            conn.close()
    raise UrlError(f"more than {max_redirects} redirects")


def _split(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise UrlError(f"malformed URL: {err}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("only http(s) and data: URLs are accepted")
    if not parts.hostname:
        raise UrlError("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused("URLs with credentials are not accepted")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), target


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UrlError(f"cannot resolve {host}: {err}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UrlError(f"{host} has no address")
    return addresses


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlError("fetching the audio URL took too long")
    return left


def _get(scheme: str, host: str, port: int, target: str, addresses: list[str], deadline: float):
    last: Exception | None = None
    for address in addresses:  # all were checked; connect to the first that answers
        try:
            sock = socket.create_connection((address, port), timeout=_left(deadline))
        except OSError as err:
            last = err
            continue
        try:
            if scheme == "https":
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            # The socket is already connected to the checked address; http.client only speaks HTTP
            # over it and sends the real host name in the Host header.
            conn = http.client.HTTPConnection(host, port, timeout=_left(deadline))
            conn.sock = sock
            conn.request("GET", target, headers={"User-Agent": "medasr-server", "Accept": "audio/*, */*"})
            return conn, sock, conn.getresponse()
        except UrlError:
            sock.close()
            raise
        except (OSError, http.client.HTTPException) as err:
            sock.close()
            last = err
    raise UrlError(f"cannot fetch from {host}: {last}")


def _read(resp: http.client.HTTPResponse, sock: socket.socket, max_bytes: int, deadline: float) -> bytes:
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise UrlTooLarge(f"the audio at the URL is larger than {max_bytes // (1024 * 1024)} MB")
    chunks, size = [], 0
    try:
        while True:
            sock.settimeout(_left(deadline))  # a slow drip cannot outlast the total deadline
            chunk = resp.read1(64 * 1024)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise UrlTooLarge(f"the audio at the URL is larger than {max_bytes // (1024 * 1024)} MB")
            chunks.append(chunk)
    except (OSError, http.client.HTTPException) as err:
        raise UrlError(f"download failed: {err}") from None
    return b"".join(chunks)
