"""The console: server-rendered pages over the registry, approvals, rollouts, monitoring and governance.

Served by the platform service at ``/``. A login page takes an API key and
keeps it in an http-only, same-site cookie; every page needs it, every form
carries a token that ties it to that session (no cross-site request
forgery), and every value is escaped by Jinja2. Charts use plotly's
JavaScript, served from the installed Python package (no CDN), each with a
table view beside it.
"""

from __future__ import annotations

from service.console.pages import router

__all__ = ["router"]
