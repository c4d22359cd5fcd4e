"""The browser pages: `/playground` (try the API) and `/console` (admin), static files with strict security headers."""

from app.web.pages import content_security_policy, web

__all__ = ["content_security_policy", "web"]
