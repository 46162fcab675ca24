"""Feedback routes: ground-truth labels for served predictions, joined later by request id.

``POST /v1/feedback`` and ``POST /v2/models/{name}/feedback`` take
``{"request_id", "label"}``, a list of them, or ``{"labels": [...]}`` (at most
``max_batch_rows`` labels) and append them to the ground-truth log; the answer
is ``{"stored": n, "file": name}``. The ``{name}`` of the v2 route is not used:
the request ids say which predictions the labels belong to.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from serving import protocol as p
from serving.protocol import RequestError
from serving.routes.common import body_schema, error_doc, json_response
from serving.state import ServerState
from storage.monitoring.ground_truth import GroundTruthLog


def add_feedback_routes(app: FastAPI, state: ServerState) -> None:
    """The v1 and v2 feedback routes (the same handler)."""
    errors = error_doc()

    async def feedback(request: Request) -> Response:
        state.authorize(request)
        payload = await state.payload(request)
        items = payload if isinstance(payload, list) else [payload]
        if isinstance(payload, Mapping) and isinstance(payload.get("labels"), list):
            items = payload["labels"]
        if len(items) > state.settings.max_batch_rows:
            raise RequestError(f"too many labels: {len(items)} (at most {state.settings.max_batch_rows})")
        truth = state.ground_truth or GroundTruthLog.from_settings()
        path = await run_in_threadpool(truth.append, items)
        return json_response({"stored": len(items), "file": str(path).rsplit("/", 1)[-1]})

    @app.post("/v1/feedback", tags=["feedback"], openapi_extra=body_schema(p.FeedbackItem), responses=errors)
    async def feedback_v1(request: Request) -> Response:
        return await feedback(request)

    @app.post(
        "/v2/models/{name}/feedback", tags=["feedback"], openapi_extra=body_schema(p.FeedbackItem),
        responses=errors,
    )  # fmt: skip
    async def feedback_v2(request: Request, name: str) -> Response:
        return await feedback(request)
