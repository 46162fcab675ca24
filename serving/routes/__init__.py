"""The model server's routes, by area; :func:`serving.app.create_app` registers them in this order.

- :mod:`serving.routes.common`: JSON answers (numpy included), the HTTP status
  of each error, and the OpenAPI fragments the routes share.
- :mod:`serving.routes.health`: liveness and readiness, server and model
  metadata (``/v2``, ``/v2/models/{name}[/versions/{v}][/ready]``), and the
  Prometheus ``/metrics``.
- :mod:`serving.routes.infer`: inference, Open Inference Protocol v2
  (``/v2/models/{name}[/versions/{v}]/infer``) and records
  (``/v1/models/{name}/predict``), their response bodies, and
  ``/v1/models/{name}/explain``.
- :mod:`serving.routes.feedback`: ground-truth labels (``/v1/feedback``,
  ``/v2/models/{name}/feedback``).

Each area is a function ``add_*_routes(app, state)`` that adds its routes to the
app, closing over the app's :class:`serving.state.ServerState`.
"""
