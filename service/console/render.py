"""Rendering for the console: the Jinja2 environment (autoescaped), chart figures, HTML error pages.

Example:
    >>> fig = bar_figure(["a", "b"], [1.0, 2.0], title="importance")
    >>> fig["data"][0]["type"], fig["data"][0]["y"]
    ('bar', [1.0, 2.0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


def page(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render ``template`` with ``context`` (values are escaped)."""
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def error_page(request: Request, status: int, message: str, session: Any = None) -> HTMLResponse:
    """An HTML page for an error on a console page."""
    return page(request, "error.html", {"status": status, "message": message, "session": session}, status)


def bar_figure(
    labels: list[str],
    values: list[float],
    *,
    title: str,
    errors: tuple[list[float], list[float]] | None = None,
    horizontal: bool = False,
) -> dict[str, Any]:
    """A plotly bar chart as JSON (``errors``: distances below and above each bar)."""
    trace: dict[str, Any] = {"type": "bar", "x": labels, "y": values, "name": title}
    if horizontal:
        trace.update({"x": values, "y": labels, "orientation": "h"})
    if errors is not None:
        low, high = errors
        trace["error_y"] = {"type": "data", "symmetric": False, "array": high, "arrayminus": low}
    return {
        "data": [trace],
        "layout": {"title": {"text": title}, "margin": {"l": 140, "r": 20, "t": 40, "b": 40}},
    }


def line_figure(x: list[Any], series: dict[str, list[float | None]], *, title: str) -> dict[str, Any]:
    """A plotly line chart with one trace per series."""
    traces = [
        {"type": "scatter", "mode": "lines+markers", "x": x, "y": ys, "name": name}
        for name, ys in series.items()
    ]
    return {
        "data": traces,
        "layout": {"title": {"text": title}, "margin": {"l": 50, "r": 20, "t": 40, "b": 40}},
    }
