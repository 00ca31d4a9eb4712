"""Trusted proxies: X-Forwarded-For/-Proto/-Host and Forwarded (RFC 7239) from allowed peers.

Strategy: nothing a client sends is believed unless the connection comes from an
address in --forwarded-allow-ips. For such a peer the forwarding chain is walked
from the right (the hop nearest to us) past every address that is itself a trusted
proxy; the first address that is not is the client. Its hop's scheme and host are
taken with it (the entry at the same position, or the nearest proxy's single value).
The result rewrites the Request before routing: `peer` (REMOTE_ADDR, REMOTE_PORT and
the access log), `scheme` (wsgi.url_scheme) and the Host header (HTTP_HOST,
SERVER_NAME, SERVER_PORT). When both header families are present, X-Forwarded-*
wins: a trusted proxy must set or append to the headers it uses. A value that does
not parse (an address that is not an IP, a scheme other than http/https, a host with
characters a host cannot have) is ignored, never passed on.
"""
import ipaddress
import re

from fastgw.errors import ConfigError

# Host: a reg-name or IPv4 (RFC 3986 characters), or a bracketed IPv6, then an optional port.
_HOST_RE = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::[0-9]{1,5})?")
SCHEMES = ("http", "https")


def parse_networks(items, where="--forwarded-allow-ips"):
    """'127.0.0.1,10.0.0.0/8' (or a list of such strings) -> (networks, trust_all, trust_unix).

    `*` trusts every peer; `unix` trusts connections over UNIX sockets (no address).
    """
    networks = []
    trust_all = trust_unix = False
    for item in items:
        for token in item.split(","):
            token = token.strip()
            if not token:
                continue
            if token == "*":
                trust_all = True
            elif token == "unix":
                trust_unix = True
            else:
                try:
                    networks.append(ipaddress.ip_network(token, strict=False))
                except ValueError:
                    raise ConfigError(f"{where} {token!r}: not an IP address or network; give "
                                      f"addresses or CIDR networks separated by commas, e.g. "
                                      f"127.0.0.1,10.0.0.0/8,::1 (or * for every peer, unix "
                                      f"for UNIX-socket peers)") from None
    return tuple(networks), trust_all, trust_unix


def parse_ip(text):
    """An address as forwarding headers write it ('1.2.3.4', '[::1]:80', '"[::1]"') -> (ip, port)."""
    text = text.strip().strip('"')
    port = 0
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        if rest.isdigit():
            port = int(rest)
    else:
        host = text
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, port if port <= 65535 else 0


def split_list(values):
    """Header values (repeats allowed) -> their comma-separated items, in order."""
    items = []
    for value in values:
        items.extend(part.strip() for part in value.split(","))
    return items


def forwarded_elements(values):
    """Forwarded: for=1.2.3.4;proto=https, for="[::1]" -> [{'for': ..., 'proto': ...}, ...]."""
    elements = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            pairs = {}
            for pair in _split_outside_quotes(element, ";"):
                name, sep, val = pair.partition("=")
                if sep:
                    val = val.strip()
                    if len(val) >= 2 and val[0] == val[-1] == '"':
                        val = val[1:-1].replace('\\"', '"')
                    pairs[name.strip().lower()] = val
            elements.append(pairs)
    return elements


def _split_outside_quotes(text, sep):
    parts, start, quoted = [], 0, False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


class TrustedProxies:
    """Applies the forwarding headers of requests from trusted peers; `apply(req)`."""

    def __init__(self, networks, trust_all=False, trust_unix=False):
        self.networks = networks
        self.trust_all = trust_all
        self.trust_unix = trust_unix
        self._cache = {}
        self._hops = {}

    @classmethod
    def from_config(cls, items):
        networks, trust_all, trust_unix = parse_networks(items)
        if not networks and not trust_all and not trust_unix:
            return None
        return cls(networks, trust_all, trust_unix)

    def trusts(self, address):
        """Is this peer address (a str, or None for a UNIX-socket peer) a trusted proxy?"""
        if address is None:
            return self.trust_unix or self.trust_all
        if self.trust_all:
            return True
        known = self._cache.get(address)
        if known is None:
            parsed = parse_ip(address)
            known = parsed is not None and self.trusts_ip(parsed[0])
            if len(self._cache) < 4096:
                self._cache[address] = known
        return known

    def trusts_ip(self, ip):
        if self.trust_all:
            return True
        return any(ip in net for net in self.networks if net.version == ip.version)

    def apply(self, req):
        """Rewrite `req` from its forwarding headers if its peer is trusted; True if it was."""
        params = req.params
        if params is not None:
            peer = params.get("REMOTE_ADDR") or None
        else:
            peer = req.peer[0] if req.peer else None
        if not self.trusts(peer):
            return False
        xff, xproto, xhost, fwd = [], [], [], []
        for name, value in req.headers or ():
            n = len(name)
            if n == 15 and name.lower() == "x-forwarded-for":
                xff.append(value)
            elif n == 17 and name.lower() == "x-forwarded-proto":
                xproto.append(value)
            elif n == 16 and name.lower() == "x-forwarded-host":
                xhost.append(value)
            elif n == 9 and name.lower() == "forwarded":
                fwd.append(value)
        if xff or xproto or xhost:
            hops = [{"for": a} for a in split_list(xff)]
            protos, hosts = split_list(xproto), split_list(xhost)
        elif fwd:
            hops = forwarded_elements(fwd)
            protos = [h.get("proto", "") for h in hops]
            hosts = [h.get("host", "") for h in hops]
        else:
            return True
        client, index = self.client_hop(hops)
        proto = self.pick(protos, index, len(hops))
        host = self.pick(hosts, index, len(hops))
        if client is not None:
            self.set_peer(req, client)
        if proto is not None and proto.lower() in SCHEMES:
            req.scheme = proto.lower()
            if params is not None:
                params["HTTPS"] = "on" if req.scheme == "https" else "off"
                params["REQUEST_SCHEME"] = req.scheme
        if host and _HOST_RE.fullmatch(host):
            self.set_host(req, host)
        return True

    def hop(self, text):
        """A forwarded address -> (address, port, is a trusted proxy), or None; cached, as
        the same few proxies and clients come back again and again."""
        found = self._hops.get(text)
        if found is None:
            parsed = parse_ip(text)
            found = False if parsed is None else (str(parsed[0]), parsed[1],
                                                  self.trusts_ip(parsed[0]))
            if len(self._hops) < 4096:
                self._hops[text] = found
        return found or None

    def client_hop(self, hops):
        """The client's (address, port) and its index in the chain, walking from the right."""
        client, index = None, None
        for i in range(len(hops) - 1, -1, -1):
            found = self.hop(hops[i].get("for", ""))
            if found is None:
                break
            client, index = found[:2], i
            if not found[2]:
                break
        return client, index

    @staticmethod
    def pick(values, index, hop_count):
        """A hop's scheme or host: the entry lined up with the client's hop, or the nearest
        proxy's (last) value when the lists do not line up."""
        values = [v for v in values if v]
        if not values:
            return None
        if index is not None and len(values) == hop_count:
            return values[index]
        return values[-1]

    @staticmethod
    def set_peer(req, client):
        address, port = client
        req.peer = (address, port)
        if req.params is not None:
            req.params["REMOTE_ADDR"] = address
            req.params["REMOTE_PORT"] = str(port)

    @staticmethod
    def set_host(req, host):
        headers = req.headers
        if headers is None:
            headers = req.headers = []
        for i, (name, _) in enumerate(headers):
            if len(name) == 4 and name.lower() == "host":
                headers[i] = (name, host)
                break
        else:
            headers.append(("Host", host))
        params = req.params
        if params is not None:
            params["HTTP_HOST"] = host
            if host.startswith("["):
                end = host.index("]")
                params["SERVER_NAME"] = host[1:end]
                rest = host[end + 1:]
                port = rest[1:] if rest.startswith(":") else ""
            elif ":" in host:
                params["SERVER_NAME"], _, port = host.partition(":")
            else:
                params["SERVER_NAME"], port = host, ""
            params["SERVER_PORT"] = port or ("443" if req.scheme == "https" else "80")
