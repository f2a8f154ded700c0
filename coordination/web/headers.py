"""Security headers for every answer.

The pages need no inline script or style (JavaScript and CSS are static files of this site and
charts are SVG drawn on the server), so the Content-Security-Policy allows this site only. The API
documentation page (flask-smorest's ReDoc page, which needs inline script and workers) keeps its
own rules: the policy is left off there, the other headers are not.
"""

from __future__ import annotations

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def init_headers(app: Flask) -> None:
    app.after_request(add_security_headers)


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not (request.endpoint or "").startswith("api-docs."):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if request.blueprint == "web":
        # Pages show personal data: no shared or back-button caches.
        response.headers.setdefault("Cache-Control", "no-store")
    return response
