"""``swarmkeeper sync``: keep the swarm in step with specs in a Git repository.

Only the command line lives here: options are checked (bad ones exit 2 before anything runs) and
turned into one ``SyncSettings`` per source; the loop is ``controller.sync``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import EXIT_INVALID, err, fail, manager_or_wait, out, setup_logging
from .ui import UiAddr, UiTokenFile, ui_token

if TYPE_CHECKING:
    from ..controller.sync import SyncSettings
    from ..engine.reconcile import Outcome
    from ..loading import SpecError
    from ..sources.commit_status import CommitStatusConfig
    from ..sources.git import Commit


@dataclass(frozen=True)
class SourceArgs:
    """One source as the command line (or a config entry on top of it) describes it."""

    repo: str | None = None
    ref: str = "main"
    path: str = ""
    name: str | None = None
    interval: str = "1m"
    prune: bool = False
    force: bool = False
    once: bool = False
    suspend: bool = False
    dry_run: bool = False
    status_file: str | None = None
    status_branch: str | None = None
    cache_dir: str | None = None
    username: str | None = None
    token_file: str | None = None
    token_env: str | None = None
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    webhook_secret_file: str | None = None
    age_key_file: str | None = None
    rollback_on_failure: bool = False
    timeout: str = "5m"
    metrics_addr: str | None = None
    ui_addr: str | None = None
    ui_token: bytes = field(default=b"", repr=False)
    host: str | None = None
    image_interval: str = "1m"
    write_images: bool = False
    image_branch: str | None = None
    git_author: str | None = None
    signoff: bool = False
    commit_status: str | None = None
    commit_status_url: str | None = None
    commit_status_repo: str | None = None
    commit_status_token_file: str | None = None


_PATH_FIELDS = (
    "status_file",
    "cache_dir",
    "token_file",
    "ssh_key_file",
    "known_hosts_file",
    "webhook_secret_file",
    "age_key_file",
    "commit_status_token_file",
)


class Invalid(Exception):
    """A bad option; the message names it."""


def build_settings(args: SourceArgs, where: str = "") -> SyncSettings:
    """``SyncSettings`` for one source, every option checked; raises ``Invalid``."""
    from pydantic import SecretStr

    from ..controller.loop import LoopOptions
    from ..controller.sync import ImageWriteBack, SyncSettings
    from ..sources.git import DEFAULT_AUTHOR, GitSource, cache_dir_for
    from ..sources.git_transport import GitAuth
    from ..sources.sops import AgeKeys, SopsError

    if not args.repo:
        raise Invalid(f"{where}--repo: a repository URL or path is required")
    interval = _duration(where, "--interval", args.interval, 0.1)
    image_interval = _duration(where, "--image-interval", args.image_interval, 0.1)
    author = args.git_author or DEFAULT_AUTHOR
    if not re.fullmatch(r"[^<>\n]+ <[^<>\s]+>", author):
        raise Invalid(f"{where}--git-author: write it as 'Name <email>'")
    timeout = _duration(where, "--timeout", args.timeout, 1.0)
    token = _token(args, where)
    auth = GitAuth(
        username=args.username,
        token=SecretStr(token) if token is not None else None,
        ssh_key_file=_readable(where, "--ssh-key-file", args.ssh_key_file),
        known_hosts_file=_readable(where, "--known-hosts-file", args.known_hosts_file),
    )
    secret = _webhook_secret(args, where)
    try:
        keys = AgeKeys.load(_readable(where, "--age-key-file", args.age_key_file))
    except SopsError as exc:
        raise Invalid(f"{where}--age-key-file: {exc}") from None
    base = Path(args.cache_dir).expanduser() if args.cache_dir else None
    try:
        git = GitSource(args.repo, args.ref, args.path, cache_dir=cache_dir_for(args.repo, base), auth=auth)
    except ValueError as exc:
        raise Invalid(f"{where}--repo: {exc}") from None
    _check_status_branch(args, where)
    name = _source_name(args, args.repo, where)
    loop = LoopOptions(
        interval=interval,
        prune=args.prune,
        force=args.force,
        once=args.once,
        source=name,
        host=args.host,
        metrics_addr=args.metrics_addr,
        image_interval=image_interval,
        ui_addr=None if args.once else args.ui_addr,
        ui_token=args.ui_token,
    )
    return SyncSettings(
        git=git,
        loop=loop,
        status_file=Path(args.status_file).expanduser().absolute() if args.status_file else None,
        status_branch=args.status_branch,
        suspend=args.suspend,
        dry_run=args.dry_run,
        rollback_on_failure=args.rollback_on_failure,
        timeout=timeout,
        webhook_secret=secret,
        age_keys=keys,
        images=ImageWriteBack(args.image_branch, author, args.signoff) if args.write_images else None,
        commit_status=_commit_status(args, where, token, name),
    )


def _commit_status(args: SourceArgs, where: str, git_token: str | None, name: str) -> CommitStatusConfig | None:
    """--commit-status: where each revision's result is posted, checked; None when not asked for."""
    from pydantic import SecretStr

    from ..sources.commit_status import FORGES, CommitStatusConfig, guess_location

    forge = args.commit_status
    if forge is None:
        extra = ("commit_status_url", "commit_status_repo", "commit_status_token_file")
        given = [f"--{f.replace('_', '-')}" for f in extra if getattr(args, f) is not None]
        if given:
            raise Invalid(f"{where}{given[0]}: needs --commit-status {'|'.join(FORGES)}")
        return None
    if forge not in FORGES:
        raise Invalid(f"{where}--commit-status: {forge!r}: use {', '.join(FORGES)}")
    api, repository = guess_location(forge, args.repo or "")
    api, repository = args.commit_status_url or api, args.commit_status_repo or repository
    if not api:
        raise Invalid(f"{where}--commit-status-url: the {forge} API's address is needed (not known from --repo)")
    if not api.startswith(("http://", "https://")):
        raise Invalid(f"{where}--commit-status-url: {api!r}: an http(s) URL, e.g. https://gitea.example.com")
    if not repository or repository.count("/") < 1:
        raise Invalid(f"{where}--commit-status-repo: OWNER/NAME is needed (not known from --repo)")
    token_file = _readable(where, "--commit-status-token-file", args.commit_status_token_file)
    token = token_file.read_text(encoding="utf-8").strip() if token_file is not None else git_token
    if not token:
        raise Invalid(f"{where}--commit-status-token-file: a token is needed (or --token-file's is used)")
    return CommitStatusConfig(forge, api, repository, SecretStr(token), context=f"swarmkeeper/{name}")


def _duration(where: str, name: str, text: str, minimum: float) -> float:
    """A duration option in seconds, at least ``minimum``."""
    from ..api.units import duration_to_ns

    try:
        seconds = duration_to_ns(text) / 1e9
    except ValueError as exc:
        raise Invalid(f"{where}{name}: {exc}") from None
    if seconds < minimum:
        raise Invalid(f"{where}{name}: must be at least {minimum:g}s")
    return seconds


def _readable(where: str, name: str, value: str | None) -> Path | None:
    """A file option: the file, which must exist (None: not given)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise Invalid(f"{where}{name}: {value}: no such file")
    return path


def _token(args: SourceArgs, where: str) -> str | None:
    """The access token, from --token-file, else from --token-env (None: neither given)."""
    token_file = _readable(where, "--token-file", args.token_file)
    if token_file is not None:
        return token_file.read_text(encoding="utf-8").strip()
    if not args.token_env:
        return None
    if not os.environ.get(args.token_env):
        raise Invalid(f"{where}--token-env: environment variable {args.token_env!r} is not set")
    return os.environ[args.token_env].strip()


def _webhook_secret(args: SourceArgs, where: str) -> bytes | None:
    secret_file = _readable(where, "--webhook-secret-file", args.webhook_secret_file)
    secret = secret_file.read_bytes().strip() if secret_file is not None else None
    if secret is not None and len(secret) < 8:
        raise Invalid(f"{where}--webhook-secret-file: the secret is too short (8 bytes at least)")
    return secret


def _check_status_branch(args: SourceArgs, where: str) -> None:
    branch = args.status_branch
    if branch is not None and branch.removeprefix("refs/heads/") == args.ref.removeprefix("refs/heads/"):
        raise Invalid(
            f"{where}--status-branch: {branch!r} is the tracked branch; status commits there would each be "
            "a new revision to apply. Use a branch of its own (e.g. swarmkeeper-status)"
        )


def _source_name(args: SourceArgs, repo: str, where: str) -> str:
    """--name, or one made from the repository and path; checked either way."""
    from ..sources.git import source_name_for

    name = args.name or source_name_for(repo, args.path)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 46:
        raise Invalid(f"{where}--name: {name!r}: use letters, digits, '-', '_' or '.', at most 46 characters")
    return name


def settings_from_config(path: Path, defaults: SourceArgs) -> tuple[list[SyncSettings], str | None]:
    """Every source of a config file, the command line's options as defaults. Relative paths in
    the file are relative to the file's folder. Returns the settings and the webhook address."""
    from ..sources.sync_config import load_config

    config, errors = load_config(path)
    if config is None:
        raise Invalid("\n".join(str(e) for e in errors))
    base = path.parent
    out_settings = []
    for i, entry in enumerate(config.sources):
        given = {k: v for k, v in entry.model_dump().items() if v is not None}
        for key in _PATH_FIELDS:
            if key in given:
                given[key] = str(base / Path(given[key]).expanduser())
        if "://" not in given["repo"] and (base / given["repo"]).exists():
            given["repo"] = str(base / given["repo"])
        known = {f.name for f in fields(SourceArgs)}
        args = replace(defaults, **{k: v for k, v in given.items() if k in known})
        out_settings.append(build_settings(args, where=f"{path}: sources[{i}]: "))
    names = [s.name for s in out_settings]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise Invalid(f"{path}: two sources have the name {', '.join(clash)}; give them distinct names")
    return out_settings, config.webhook_addr


def print_plan(name: str, commit: Commit | None, errors: Sequence[SpecError], outcomes: Sequence[Outcome]) -> None:
    """--dry-run: what each new commit would change (or why it would not be applied)."""
    from . import render

    title = f"{commit.short} {commit.subject}" if commit is not None else "(unknown revision)"
    out.print(f"{name}: revision {title}", markup=False)
    for e in errors:
        err.print(f"error: {e}", markup=False)
    if errors:
        err.print(f"{len(errors)} errors; this revision would not be applied", markup=False)
        return
    changes = False
    for outcome in outcomes:
        for line in render.plan_lines(outcome.plan):
            out.print(line)
        changes = changes or not outcome.plan.empty
    if not changes:
        out.print("no changes")


def register(app: typer.Typer) -> None:
    @app.command()
    def sync(
        repo: Annotated[
            str | None, typer.Option(metavar="URL", help="A path, file://, git://, http(s):// or ssh URL.")
        ] = None,
        ref: Annotated[str, typer.Option(metavar="REF", help="Branch or tag to follow (or a full ref name).")] = "main",
        path: Annotated[
            str, typer.Option(metavar="PATH", help="Folder (or file) of specs inside the repository.")
        ] = "",
        config: Annotated[
            Path | None, typer.Option(metavar="FILE", help="Several sources from a YAML file (sources: [...]).")
        ] = None,
        name: Annotated[
            str | None, typer.Option(metavar="NAME", help="Owner name for prune (default: derived).")
        ] = None,
        interval: Annotated[str, typer.Option(metavar="DURATION", help="Poll period (fetch and full resync).")] = "1m",
        prune: Annotated[bool, typer.Option(help="Delete objects of this source that left the specs.")] = False,
        force: Annotated[bool, typer.Option(help="Allow pruning more than half of this source's objects.")] = False,
        once: Annotated[bool, typer.Option(help="One fetch and pass, then exit (2: invalid specs).")] = False,
        suspend: Annotated[bool, typer.Option(help="Fetch and report only; apply nothing.")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print each new plan; apply nothing.")] = False,
        status_file: Annotated[
            str | None, typer.Option(metavar="FILE", help="Write the source's status (YAML) to this file.")
        ] = None,
        status_branch: Annotated[
            str | None, typer.Option(metavar="BRANCH", help="Also commit the status to this branch.")
        ] = None,
        cache_dir: Annotated[str | None, typer.Option(metavar="DIR", help="Base folder of repository caches.")] = None,
        username: Annotated[
            str | None, typer.Option(metavar="USER", help="http(s)/ssh user (default: git with a token).")
        ] = None,
        token_file: Annotated[
            str | None, typer.Option(metavar="FILE", help="File holding an http(s) access token.")
        ] = None,
        token_env: Annotated[
            str | None, typer.Option(metavar="VAR", help="Environment variable holding an access token.")
        ] = None,
        ssh_key_file: Annotated[str | None, typer.Option(metavar="FILE", help="ssh private key file.")] = None,
        known_hosts_file: Annotated[
            str | None, typer.Option(metavar="FILE", help="ssh known_hosts: only these host keys.")
        ] = None,
        webhook_addr: Annotated[
            str | None, typer.Option(metavar="HOST:PORT", help="Receive push webhooks on HOST:PORT.")
        ] = None,
        webhook_secret_file: Annotated[
            str | None, typer.Option(metavar="FILE", help="Shared secret of the webhooks.")
        ] = None,
        age_key_file: Annotated[str | None, typer.Option(metavar="FILE", help="age keys for SOPS files.")] = None,
        rollback_on_failure: Annotated[
            bool, typer.Option(help="Re-apply the last converged revision when a release fails.")
        ] = False,
        timeout: Annotated[
            str, typer.Option(metavar="DURATION", help="How long a release may take to converge.")
        ] = "5m",
        metrics_addr: Annotated[
            str | None, typer.Option(metavar="HOST:PORT", help="Serve /metrics and health.")
        ] = None,
        ui_addr: UiAddr = None,
        ui_token_file: UiTokenFile = None,
        log_format: Annotated[str, typer.Option(metavar="FORMAT", help="text or json.")] = "text",
        host: Annotated[
            str | None, typer.Option("--host", "-H", envvar="DOCKER_HOST", metavar="URL", help="Default engine.")
        ] = None,
        image_interval: Annotated[
            str, typer.Option(metavar="DURATION", help="How often registries are asked about followed tags.")
        ] = "1m",
        write_images: Annotated[
            bool,
            typer.Option(
                help="Commit the image each service with an imagePolicy runs (name:tag@digest) back into its "
                "spec file, so Git names what runs.",
            ),
        ] = False,
        image_branch: Annotated[
            str | None,
            typer.Option(metavar="BRANCH", help="With --write-images: commit to this branch (default: --ref's)."),
        ] = None,
        git_author: Annotated[
            str | None, typer.Option(metavar="'NAME <EMAIL>'", help="Author of the commits swarmkeeper makes.")
        ] = None,
        signoff: Annotated[bool, typer.Option(help="Add a Signed-off-by line to those commits.")] = False,
        commit_status: Annotated[
            str | None,
            typer.Option(
                metavar="FORGE",
                help="Post each revision's result as a commit status: github, gitea (also Forgejo) or gitlab.",
            ),
        ] = None,
        commit_status_url: Annotated[
            str | None, typer.Option(metavar="URL", help="The forge's API address (default: from --repo).")
        ] = None,
        commit_status_repo: Annotated[
            str | None, typer.Option(metavar="OWNER/NAME", help="The repository on the forge (default: from --repo).")
        ] = None,
        commit_status_token_file: Annotated[
            str | None,
            typer.Option(metavar="FILE", help="Token allowed to set commit statuses (default: --token-file's)."),
        ] = None,
        verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging.")] = 0,
    ) -> None:
        """Keep the swarm in step with specs in a Git repository.

        Applies the newest valid commit of --ref (an invalid one keeps the last good revision
        applied), labels what it changes with the commit, and reports revisions and object status
        to --status-file / --status-branch. A SwarmSecret's spec.file may be SOPS-encrypted (age
        keys): it is decrypted in memory only.
        """
        from ..controller.sync import run_sync

        if log_format not in ("text", "json"):
            fail("--log-format must be text or json", EXIT_INVALID)
        setup_logging(max(verbose, 1), log_format)
        args = SourceArgs(
            repo=repo,
            ref=ref,
            path=path,
            name=name,
            interval=interval,
            prune=prune,
            force=force,
            once=once,
            suspend=suspend,
            dry_run=dry_run,
            status_file=status_file,
            status_branch=status_branch,
            cache_dir=cache_dir,
            username=username,
            token_file=token_file,
            token_env=token_env,
            ssh_key_file=ssh_key_file,
            known_hosts_file=known_hosts_file,
            webhook_secret_file=webhook_secret_file,
            age_key_file=age_key_file,
            rollback_on_failure=rollback_on_failure,
            timeout=timeout,
            metrics_addr=metrics_addr,
            ui_addr=ui_addr,
            ui_token=ui_token(ui_addr, ui_token_file),
            host=host,
            image_interval=image_interval,
            write_images=write_images,
            image_branch=image_branch,
            git_author=git_author,
            signoff=signoff,
            commit_status=commit_status,
            commit_status_url=commit_status_url,
            commit_status_repo=commit_status_repo,
            commit_status_token_file=commit_status_token_file,
        )
        try:
            if config is not None:
                if repo is not None:
                    raise Invalid("--repo and --config exclude each other")
                if ui_addr is not None:
                    raise Invalid("--ui-addr shows one source: use it with --repo, not --config")
                settings, config_webhook = settings_from_config(config, replace(args, metrics_addr=None))
                webhook_addr = webhook_addr or config_webhook
            else:
                settings = [build_settings(args)]
        except Invalid as exc:
            fail(str(exc), EXIT_INVALID)
        if webhook_addr and not any(s.webhook_secret for s in settings):
            fail("--webhook-addr needs --webhook-secret-file: unsigned webhooks are refused", EXIT_INVALID)
        _check_swarm(host, wait=not once)
        raise typer.Exit(run_sync(settings, webhook_addr, print_plan))


def _check_swarm(host: str | None, wait: bool) -> None:
    from ..engine.run import Clients

    manager_or_wait(lambda: Clients(host).get(None), wait=wait)
