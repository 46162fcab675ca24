"""The ``mlops`` command: the model registry and the audit log from a shell.

Every read command takes ``--json`` and then prints only JSON on stdout;
without it, it prints tables for people. Errors the platform raises on purpose
(:class:`storage.errors.MlopsError`) become ``error: <message>`` on stderr and
exit code 1, without a traceback.

Example::

    mlops registry create fraud --owner risk-team --tag team=risk
    mlops registry register fraud --framework sklearn --file model.skops --metric auc=0.93
    mlops registry stage fraud 1 staging --reason "passed offline eval"
    mlops registry versions fraud --metric "auc>=0.9" --json

With ``MLOPS_API_URL`` and ``MLOPS_API_KEY`` set, the registry, approvals,
reviewers, audit, lineage and keys commands talk to the platform service
(``mlops server``) instead of a local database (see :mod:`mlops._remote`).
"""

from __future__ import annotations

from importlib import metadata

import typer

from mlops import _render as render
from mlops._cli_common import PACKAGE, ErrorReportingGroup, JsonOpt, say
from mlops.cli_alert_routes import routes_app
from mlops.cli_approvals import approvals_app, approve, reject, reviewers_app, rollback
from mlops.cli_audit import audit_app
from mlops.cli_batch import predict
from mlops.cli_compliance import attest, compliance_app, risk
from mlops.cli_endpoints import canary_app, endpoints_app
from mlops.cli_features import app as features_app
from mlops.cli_governance import erase, lineage_app
from mlops.cli_models import import_model_cmd, tag, untag
from mlops.cli_monitoring import alerts_app, monitor_app
from mlops.cli_ops import down, status, up
from mlops.cli_registry import registry_app
from mlops.cli_server import keys_app, server, whoami
from mlops.cli_serving import serve
from mlops.cli_training import train

app = typer.Typer(
    cls=ErrorReportingGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="DWCP MLOps: registry, approvals, features, governance and audit log from the command line.",
)
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_app, name="approvals")
app.add_typer(features_app, name="features")
app.add_typer(compliance_app, name="compliance")
app.add_typer(lineage_app, name="lineage")
app.add_typer(monitor_app, name="monitor")
app.add_typer(alerts_app, name="alerts")
alerts_app.add_typer(routes_app, name="routes")
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(canary_app, name="canary")
app.command("attest")(attest)
app.command("risk")(risk)
app.command("erase")(erase)
app.command("train")(train)
app.command("serve")(serve)
app.command("predict")(predict)
app.add_typer(reviewers_app, name="reviewers")
app.command("approve")(approve)
app.command("reject")(reject)
registry_app.command("rollback")(rollback)
registry_app.command("tag")(tag)
registry_app.command("untag")(untag)
registry_app.command("import")(import_model_cmd)
app.command("up")(up)
app.command("down")(down)
app.command("status")(status)
app.command("server")(server)
app.command("ui", help="Alias of `mlops server`: the platform service and its console.")(server)
app.add_typer(keys_app, name="keys")
app.command("whoami")(whoami)


# ------------------------------------------------------------------- root
@app.command("version")
def version_cmd(as_json: JsonOpt = False) -> None:
    """Print the installed package version."""
    installed = metadata.version(PACKAGE)
    if as_json:
        render.emit_json({"package": PACKAGE, "version": installed})
    else:
        say(f"{PACKAGE} {installed}")


# ----------------------------------------------------------------- models


def main() -> None:
    """Entry point of the ``mlops`` console script."""
    app(prog_name="mlops")


if __name__ == "__main__":
    main()
