"""The REST API's routers, one module per area, all under ``/api/v1``.

``registry`` (models, versions, stages, aliases, tags, compare, verify,
lineage), ``artifacts`` (streamed upload and download), ``approvals``,
``governance`` (audit, lineage of data sets, reports, erasure), ``operations``
(endpoints, alerts, features) and ``keys``.
"""
