"""The server's TLS settings as an ssl.SSLContext, built once in the master.

Strategy: one SSLContext from the Config's TLS fields (certificate and key, ciphers,
minimum version, client certificates), made before the workers fork so they share
it and its session-ticket keys (a client resumes its session on any worker). Each
--sni-cert gets a context of its own with the same settings; the main context's SNI
callback switches a handshake to it by server name (exact, then `*.` wildcard), and
a name none covers gets --certfile. A reload builds them all again; any problem is a
TlsConfigError (exit 2) naming the flag and the fix, so a bad new certificate keeps
the old workers (master.reload). Defaults are Mozilla's "intermediate" profile: TLS
1.2 and 1.3, forward-secret AEAD ciphers, no compression, no renegotiation, ALPN
http/1.1, session tickets on.
"""
import logging
import os
import ssl

from fastgw.errors import TlsConfigError

log = logging.getLogger("fastgw.error")

# Mozilla's "intermediate" TLS 1.2 cipher list (TLS 1.3 suites are OpenSSL's defaults).
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305"))

MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
             "required": ssl.CERT_REQUIRED}


def uses_tls(config):
    return any(bind.scheme == "https" for bind in config.binds)


def parse_sni_cert(text):
    """'NAME=CERTFILE[,KEYFILE]' -> (name, certfile, keyfile or None)."""
    name, sep, files = text.partition("=")
    certfile, _, keyfile = files.partition(",")
    name = name.strip().lower()
    if not sep or not name or not certfile:
        raise TlsConfigError(f"--sni-cert {text!r}: expected SERVER_NAME=CERTFILE[,KEYFILE], "
                             f"e.g. example.org=/etc/ssl/example.org.pem,/etc/ssl/example.org.key")
    return name, certfile, keyfile or None


def server_context(config):
    """The SSLContext of the config's HTTPS listeners (None without one)."""
    if not uses_tls(config):
        return None
    ctx = make_context(config, config.certfile, config.keyfile,
                       f"--certfile {config.certfile!r}"
                       + (f" --keyfile {config.keyfile!r}" if config.keyfile else ""))
    by_name = {}
    for text in config.sni_cert:
        name, certfile, keyfile = parse_sni_cert(text)
        by_name[name] = make_context(config, certfile, keyfile, f"--sni-cert {text!r}")
    if by_name:
        def choose(tls, server_name, first):
            if not server_name:
                return None
            name = server_name.lower()
            other = by_name.get(name) or by_name.get("*." + name.partition(".")[2])
            if other is not None:
                tls.context = other
            return None
        ctx.sni_callback = choose
    return ctx


def make_context(config, certfile, keyfile, where):
    """A context with the config's settings and one certificate; `where` names its flag."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSIONS[config.ssl_min_version]
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.set_ciphers(config.ssl_ciphers or INTERMEDIATE_CIPHERS)
    except ssl.SSLError:
        raise TlsConfigError(f"--ssl-ciphers {config.ssl_ciphers!r}: OpenSSL accepts none of "
                             f"these ciphers; give an OpenSSL cipher list such as "
                             f"'ECDHE+AESGCM'") from None
    ctx.set_alpn_protocols(["http/1.1"])
    load_certificate(ctx, certfile, keyfile, where)
    ctx.verify_mode = CERT_REQS[config.cert_reqs]
    if config.ca_certs:
        try:
            ctx.load_verify_locations(cafile=config.ca_certs)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError(f"--ca-certs {config.ca_certs!r}: cannot load the CA "
                                 f"certificates: {describe(e)}; give a PEM file of the CAs "
                                 f"that sign client certificates") from None
    return ctx


def load_certificate(ctx, certfile, keyfile, where):
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except OSError as e:
        if isinstance(e, ssl.SSLError):
            raise TlsConfigError(f"{where}: cannot load the certificate and key: "
                                 f"{describe(e)}; give the PEM certificate chain and the PEM "
                                 f"private key that belongs to it") from None
        raise TlsConfigError(f"{where}: cannot read {e.filename or certfile!r}: "
                             f"{e.strerror}") from None
    key = keyfile or certfile
    try:
        readable_by_others = os.stat(key).st_mode & 0o004
    except OSError:
        readable_by_others = False
    if readable_by_others:
        log.warning("the private key %s is readable by every user; make it private "
                    "(chmod 600, or 640 with a group the server runs as)", key)


def describe(error):
    return getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
