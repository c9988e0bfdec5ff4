"""Which client sent a request: the address its rate limits are counted against."""

from __future__ import annotations

from werkzeug.wrappers import Request


def client_address(request: Request, forwarded_hops: int = 0) -> str:
    """The caller's IP address.

    On Lambda, API Gateway's ``requestContext.http.sourceIp`` (the peer it saw); locally, the
    socket's peer. X-Forwarded-For is anyone's to write, so it is only read when the deployment
    says how many proxies of its own append to it (``forwarded_hops``, e.g. 2 behind CloudFront
    and API Gateway): the address that many entries from the right is the one the outermost
    trusted proxy saw.
    """
    if forwarded_hops > 0:
        chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        chain = [a for a in chain if a]
        if len(chain) >= forwarded_hops:
            return chain[-forwarded_hops]
    context = request.environ.get("apig_wsgi.request_context")
    http = context.get("http") if isinstance(context, dict) else None
    source = http.get("sourceIp") if isinstance(http, dict) else None
    if isinstance(source, str) and source:
        return source
    return request.remote_addr or "unknown"
