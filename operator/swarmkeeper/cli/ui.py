"""``--ui-addr`` / ``--ui-token-file``: checked before anything starts, shared by watch and sync."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_INVALID, fail

UiAddr = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        help="Serve the read-only dashboard on HOST:PORT (host 127.0.0.1 when omitted; any other than a "
        "loopback address needs --ui-token-file).",
    ),
]
UiTokenFile = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="Token the dashboard asks for: Authorization: Bearer <token>, or ?token=<token> once in a browser.",
    ),
]


def ui_token(addr: str | None, token_file: Path | None) -> bytes:
    """The dashboard's token, read once (empty: none); exit 2 when the address is refused."""
    from ..controller.ui import check_address
    from ..loading.files import FileProblem, read_bounded

    if addr is None:
        if token_file is not None:
            fail("--ui-token-file needs --ui-addr", EXIT_INVALID)
        return b""
    token = b""
    if token_file is not None:
        try:
            token = read_bounded(token_file, 4096).strip()
        except FileProblem as exc:
            fail(f"--ui-token-file {token_file}: {exc}", EXIT_INVALID)
        if not token:
            fail(f"--ui-token-file {token_file}: is empty", EXIT_INVALID)
    problem = check_address(addr, bool(token))
    if problem is not None:
        fail(f"--ui-addr: {problem}", EXIT_INVALID)
    return token
