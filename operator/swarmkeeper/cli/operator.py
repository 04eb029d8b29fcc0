"""``swarmkeeper operator``: the Kubernetes front door, as a long-running process.

Only option parsing lives here; the operator is ``controller/operator.py``. kopf and the Kubernetes
client are imported when the command runs, so ``swarmkeeper --help`` stays fast.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .common import EXIT_INVALID, ImageInterval, fail, setup_logging
from .ui import UiAddr, UiTokenFile, ui_token


def register(app: typer.Typer) -> None:
    app.command()(operator)


def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", metavar="NS", help="Watch this namespace (repeat for several)."),
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")] = False,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", "-H", metavar="URL", help="Default engine (objects without spec.cluster); else DOCKER_HOST."
        ),
    ] = None,
    metrics_addr: Annotated[
        str | None, typer.Option(metavar="HOST:PORT", help="Serve /metrics, /healthz and /readyz on HOST:PORT.")
    ] = None,
    resync: Annotated[
        str, typer.Option(metavar="DURATION", help="Full pass over every namespace at least this often.")
    ] = "30s",
    lease_namespace: Annotated[
        str | None,
        typer.Option(
            metavar="NS",
            help="Namespace of the Lease that elects the acting operator (default: POD_NAMESPACE, "
            "else the only --namespace, else default).",
        ),
    ] = None,
    lease_name: Annotated[str, typer.Option(metavar="NAME", help="Name of that Lease.")] = "swarmkeeper-operator",
    lease_ttl: Annotated[
        str, typer.Option(metavar="DURATION", help="How long a silent holder keeps the Lease.")
    ] = "15s",
    registry_auth_secret: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Registry logins: the Secret NAME (type kubernetes.io/dockerconfigjson) of each namespace, "
            "as a pod's imagePullSecrets; used to pin images and sent so every node can pull.",
        ),
    ] = None,
    image_interval: ImageInterval = "1m",
    ui_addr: UiAddr = None,
    ui_token_file: UiTokenFile = None,
    log_format: Annotated[str, typer.Option(metavar="FORMAT", help="text or json.")] = "text",
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
) -> None:
    """Apply swarmkeeper's Kubernetes custom resources to the swarm; write their status back."""
    from ..api.units import duration_to_ns

    namespaces = tuple(dict.fromkeys(namespace or ()))
    if bool(namespaces) == all_namespaces:
        fail("give either --namespace NS (one or more) or --all-namespaces", EXIT_INVALID)
    if log_format not in ("text", "json"):
        fail("--log-format must be text or json", EXIT_INVALID)
    try:
        resync_s = duration_to_ns(resync) / 1e9
        ttl_s = duration_to_ns(lease_ttl) / 1e9
    except ValueError as exc:
        fail(str(exc), EXIT_INVALID)
    try:
        image_s = duration_to_ns(image_interval) / 1e9
    except ValueError as exc:
        fail(f"--image-interval: {exc}", EXIT_INVALID)
    if image_s < 0.1:
        fail("--image-interval must be at least 0.1s", EXIT_INVALID)
    if resync_s < 1 or ttl_s < 3:
        fail("--resync must be at least 1s and --lease-ttl at least 3s", EXIT_INVALID)
    token = ui_token(ui_addr, ui_token_file)
    setup_logging(max(verbose, 1), log_format)
    _quiet_libraries(verbose)

    from ..controller.operator import OperatorOptions, run_operator

    lease_ns = lease_namespace or os.environ.get("POD_NAMESPACE") or (namespaces[0] if len(namespaces) == 1 else None)
    options = OperatorOptions(
        namespaces=namespaces,
        host=host,
        metrics_addr=metrics_addr,
        resync=resync_s,
        lease_namespace=lease_ns or "default",
        lease_name=lease_name,
        lease_ttl=ttl_s,
        registry_secret=registry_auth_secret,
        image_interval=image_s,
        ui_addr=ui_addr,
        ui_token=token,
    )
    raise typer.Exit(run_operator(options))


def _quiet_libraries(verbose: int) -> None:
    """kopf reports every handler run at INFO and the HTTP libraries chat at DEBUG; ours says what matters."""
    import logging

    logging.getLogger("kopf").setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    for name in ("urllib3", "aiohttp", "kubernetes", "docker"):
        logging.getLogger(name).setLevel(logging.WARNING)
