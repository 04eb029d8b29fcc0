"""Hostile spec files are refused cleanly: exit 2, an error naming file and line, not a byte of any
secret value, within seconds, and without a single call to the Docker Engine.

The cases are ``tests/corpus/`` (see its README.md, which also holds each case's expectation); the
ones that cannot be committed — symlinks, FIFOs, unreadable files, files of megabytes — are built
here by the function registered under the case's name. Engine calls are counted on the wire by
``engine_proxy.EngineProxy``, which also refuses any mutating call, so even a regression cannot
change the shared engine.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest

from cli_helpers import sk
from engine_proxy import EngineProxy

CORPUS = Path(__file__).parent / "corpus"
SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
MARKER = "c4n4ry-7b1e"  # part of every secret value in the corpus
TIME_LIMIT = 10.0  # seconds: "a few", with room for a loaded two-core CI machine
# Root reads files whatever their mode; without these capabilities it is held to the mode bits.
WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
# Never set while the tests run: the corpus names them in env: sources.
UNSET_VARIABLES = ("SWARMKEEPER_HOSTILE_UNSET", "HOSTILE_TOKEN")

# What a spec could use to drive the reader's terminal (ESC, CSI, BEL, backspace, CR, ...).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<at>[^|]+) \| (?P<expect>[^|]+) \| (?P<what>.+) \|$")


@dataclass(frozen=True)
class Case:
    name: str
    at: str | None  # "path:line", "path:*" (some line), "path" (no line), None for a valid case
    expect: str | None  # a fragment of the error; None for a valid case
    generated: bool

    @property
    def valid(self) -> bool:
        return self.expect is None


def _cell(text: str) -> str:
    return text.strip().removeprefix("`").removesuffix("`")


def read_manifest() -> list[Case]:
    cases: list[Case] = []
    generated = False
    for line in (CORPUS / "README.md").read_text().splitlines():
        if line.startswith("## Generated"):
            generated = True
        match = _ROW.match(line)
        if match is None:
            continue
        valid = match["expect"].strip() == "*valid*"
        at = None if match["at"].strip() == "—" else _cell(match["at"])
        cases.append(Case(match["name"], at, None if valid else _cell(match["expect"]), generated))
    return cases


CASES = read_manifest()


# -- generated cases ---------------------------------------------------------------------------------


@dataclass
class Built:
    target: Path  # what swarmkeeper is pointed at
    env: dict[str, str] = field(default_factory=dict)
    unprivileged: bool = False  # run without the capabilities that let root read any file
    process: bool = False  # run as a real process (hangs and crashes cannot hide in-process)


Builder = Callable[[Path, str], Built]
BUILDERS: dict[str, Builder] = {}


def builds(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        BUILDERS[name] = builder
        return builder

    return register


SERVICE = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmService
metadata:
  name: web
  namespace: hostile
spec:
  image: local/busybox:1
  command: ["sleep", "3600"]
"""  # the next line is line 9

SECRET = """\
apiVersion: swarmkeeper.io/v1alpha1
kind: SwarmSecret
metadata:
  name: token
  namespace: hostile
spec:
"""  # the value source is line 7


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def filled(secret: str, size: int) -> str:
    """``size`` characters of the secret repeated: any quote of it contains the marker."""
    return (secret * (size // len(secret) + 1))[:size]


@builds("gen-utf16")
def _utf16(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE.encode("utf-16"))
    return Built(root)


@builds("gen-nul-byte")
def _nul_byte(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  hostname: web\x00primary\n")
    return Built(root)


@builds("gen-nul-in-secret")
def _nul_in_secret(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + f"  stringData: {secret}\x00{secret}\n")
    return Built(root)


@builds("gen-string-10mb")
def _string_10mb(root: Path, secret: str) -> Built:
    write(root / "huge.yaml", SECRET + f'  stringData: "{filled(secret, 10_000_000)}"\n')
    return Built(root, process=True)


@builds("gen-secret-3mb-inline")
def _secret_3mb(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + f'  stringData: "{filled(secret, 3_000_000)}"\n')
    return Built(root)


@builds("gen-int-5000-digits")
def _int_5000_digits(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  replicas: " + "9" * 5000 + "\n")
    return Built(root)


@builds("gen-key-3mb")
def _key_3mb(root: Path, secret: str) -> Built:
    # An explicit key (?): an implicit one may not be longer than 1024 characters.
    write(root / "web.yaml", SERVICE + "  ? " + "k" * 3_000_000 + "\n  : 1\n")
    return Built(root)


@builds("gen-kind-3mb")
def _kind_3mb(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE.replace("kind: SwarmService", "kind: " + "K" * 3_000_000))
    return Built(root)


@builds("gen-nesting-flow-10k")
def _nesting_flow(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  args: " + "[" * 10_000 + "]" * 10_000 + "\n")
    return Built(root, process=True)


@builds("gen-nesting-block-10k")
def _nesting_block(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  args:\n    " + "- " * 10_000 + "x\n")
    return Built(root, process=True)


@builds("gen-list-100k")
def _list_100k(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  args: [" + ", ".join(["x"] * 100_000) + "]\n")
    return Built(root, process=True)


@builds("gen-mapping-100k")
def _mapping_100k(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  env:\n" + "".join(f"    K{i}: v\n" for i in range(100_000)))
    return Built(root)


@builds("gen-documents-1m-empty")
def _documents_1m(root: Path, secret: str) -> Built:
    write(root / "many.yaml", "---\n" * 1_000_000)
    return Built(root, process=True)


@builds("gen-documents-5000-invalid")
def _documents_5000(root: Path, secret: str) -> Built:
    write(root / "many.yaml", ("---\n" + SERVICE + "  replicas: -1\n") * 5000)
    return Built(root)


@builds("gen-value-symlink-to-etc-passwd")
def _value_symlink(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: token\n")
    (root / "token").symlink_to("/etc/passwd")
    return Built(root)


@builds("gen-value-through-symlinked-folder")
def _value_symlinked_folder(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: shared/passwd\n")
    (root / "shared").symlink_to("/etc", target_is_directory=True)
    return Built(root)


@builds("gen-value-symlink-loop")
def _value_symlink_loop(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: token\n")
    (root / "token").symlink_to("token2")
    (root / "token2").symlink_to("token")
    return Built(root)


@builds("gen-value-fifo")
def _value_fifo(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: token\n")
    os.mkfifo(root / "token")
    return Built(root, process=True)


@builds("gen-value-600kib")
def _value_600kib(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: token\n")
    write(root / "token", filled(secret, 600 * 1024))
    return Built(root)


@builds("gen-env-file-2mib")
def _env_file_2mib(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE + "  envFile: [big.env]\n")
    write(root / "big.env", "".join(f"K{i}={secret}\n" for i in range(2 * 1024 * 1024 // len(secret))))
    return Built(root)


@builds("gen-spec-symlink-to-etc-passwd")
def _spec_symlink_passwd(root: Path, secret: str) -> Built:
    root.mkdir(parents=True)
    (root / "passwd.yaml").symlink_to("/etc/passwd")
    return Built(root)


@builds("gen-spec-symlink-outside-root")
def _spec_symlink_outside(root: Path, secret: str) -> Built:
    write(root / "elsewhere" / "team-secret.yaml", SECRET + f"  stringData: {secret}\n")
    (root / "specs").mkdir()
    (root / "specs" / "stolen.yaml").symlink_to("../elsewhere/team-secret.yaml")
    return Built(root / "specs")


@builds("gen-spec-dangling-symlink")
def _spec_dangling(root: Path, secret: str) -> Built:
    root.mkdir(parents=True)
    (root / "web.yaml").symlink_to("missing.yaml")
    return Built(root)


@builds("gen-spec-symlink-loop")
def _spec_loop(root: Path, secret: str) -> Built:
    root.mkdir(parents=True)
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    return Built(root)


@builds("gen-spec-fifo")
def _spec_fifo(root: Path, secret: str) -> Built:
    root.mkdir(parents=True)
    os.mkfifo(root / "x.yaml")
    return Built(root, process=True)


@builds("gen-spec-socket")
def _spec_socket(root: Path, secret: str) -> Built:
    root.mkdir(parents=True)
    # Binding would need a path under ~107 bytes; a socket inode needs no listener to exist.
    os.mknod(root / "x.yaml", stat.S_IFSOCK | 0o600)
    return Built(root)


@builds("gen-spec-unreadable")
def _spec_unreadable(root: Path, secret: str) -> Built:
    write(root / "web.yaml", SERVICE).chmod(0)
    return Built(root, unprivileged=True)


@builds("gen-folder-unreadable")
def _folder_unreadable(root: Path, secret: str) -> Built:
    write(root / "private" / "web.yaml", SERVICE)
    (root / "private").chmod(0)
    return Built(root, unprivileged=True)


@builds("gen-value-unreadable")
def _value_unreadable(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  file: token\n")
    write(root / "token", secret).chmod(0)
    return Built(root, unprivileged=True)


@builds("gen-env-value-too-large")
def _env_value_too_large(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  env: HOSTILE_BIG\n")
    # In-process only: exec() refuses a single environment string over 128 KiB.
    return Built(root, env={"HOSTILE_BIG": filled(secret, 1024 * 1024)})


@builds("gen-env-value-empty")
def _env_value_empty(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  env: HOSTILE_EMPTY\n")
    return Built(root, env={"HOSTILE_EMPTY": ""})


@builds("gen-env-value-beside-dangling-reference")
def _env_value_beside_error(root: Path, secret: str) -> Built:
    write(root / "secret.yaml", SECRET + "  env: HOSTILE_VALUE\n")
    write(root / "web.yaml", SERVICE + "  networks: [{name: backend}]\n  secrets: [{source: token}]\n")
    return Built(root, env={"HOSTILE_VALUE": secret})


# -- running swarmkeeper -------------------------------------------------------------------------------


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_in_process(args: list[str], env: dict[str, str | None]) -> Run:
    started = time.monotonic()
    result = sk(*args, env=env)
    return Run(result.code, result.stdout, result.stderr, time.monotonic() - started)


def run_process(args: list[str], env: dict[str, str | None], *, unprivileged: bool = False) -> Run:
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    command = [*(WITHOUT_DAC if unprivileged else []), str(SWARMKEEPER), *args]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, env=full_env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"swarmkeeper {' '.join(args)} did not finish within 60 s")
    seconds = time.monotonic() - started
    return Run(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), seconds)


def mode_bits_bind_root() -> bool:
    """Whether a process started through WITHOUT_DAC really is refused a file of mode 000."""
    with tempfile.NamedTemporaryFile() as probe:
        os.chmod(probe.name, 0)
        try:
            result = subprocess.run([*WITHOUT_DAC, "cat", probe.name], capture_output=True, check=False)
        except OSError:  # no setpriv
            return False
        return result.returncode != 0 and b"Permission denied" in result.stderr


@pytest.fixture(scope="module")
def proxy() -> Iterator[EngineProxy]:
    """Every engine call of the module's commands goes through here; mutating ones are refused."""
    with EngineProxy(refuse_mutating=True) as engine_proxy:
        yield engine_proxy


def prepare(case: Case, root: Path, secret: str) -> Built:
    if not case.generated:
        source = CORPUS / case.name
        if source.is_dir():
            shutil.copytree(source, root / case.name, symlinks=True)
        else:
            shutil.copy2(source, root / case.name)
        return Built(root / case.name)
    return BUILDERS[case.name](root / case.name, secret)


def check_location(case: Case, run: Run, root: Path) -> None:
    assert case.at is not None and case.expect is not None
    path, _, line = case.at.partition(":")
    where = str(root / path)
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    if not line:
        located = [e for e in errors if e.startswith(f"error: {where}: ")]
    elif line == "*":
        located = [e for e in errors if re.match(rf"error: {re.escape(where)}:\d+[:]", e)]
    else:
        located = [e for e in errors if e.startswith(f"error: {where}:{line}:")]
    assert located, f"no error at {case.at}:\n{run.stderr[-3000:]}"
    assert any(case.expect in e for e in located), f"{case.expect!r} not in the errors at {case.at}:\n{located}"


# -- the tests -------------------------------------------------------------------------------------------


def test_the_manifest_lists_every_case_and_nothing_else() -> None:
    committed = {c.name for c in CASES if not c.generated}
    on_disk = {p.name for p in CORPUS.iterdir() if p.name != "README.md"}
    assert committed == on_disk, f"missing rows: {on_disk - committed}; missing files: {committed - on_disk}"
    assert {c.name for c in CASES if c.generated} == set(BUILDERS)
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_refused_cleanly(case: Case, tmp_path: Path, proxy: EngineProxy) -> None:
    secret = f"{MARKER}-{uuid.uuid4()}"
    built = prepare(case, tmp_path, secret)
    if built.unprivileged and not mode_bits_bind_root():
        # Tests run as root, which reads files whatever their mode; without setpriv (util-linux)
        # there is no way here to drop the capabilities that allow it, so this variant cannot run.
        pytest.skip("cannot start a process that is held to file mode bits (setpriv missing?)")
    env: dict[str, str | None] = {"DOCKER_HOST": proxy.url, **dict.fromkeys(UNSET_VARIABLES), **built.env}
    for command in ("validate", "apply"):
        proxy.reset()
        args = [command, str(built.target)]
        if built.unprivileged or built.process:
            run = run_process(args, env, unprivileged=built.unprivileged)
        else:
            run = run_in_process(args, env)
        label = f"swarmkeeper {command} {case.name}"
        assert run.code == (0 if case.valid else 2), f"{label} exited {run.code}:\n{run.output[-3000:]}"
        assert MARKER not in run.output and secret not in run.output, f"{label} printed a secret value"
        assert not RAW_CONTROL.search(run.output), f"{label} printed a raw control character"
        assert run.seconds < TIME_LIMIT, f"{label} took {run.seconds:.1f}s"
        assert proxy.requests == [], f"{label} called the engine: {[str(r) for r in proxy.requests]}"
        if case.valid:
            if command == "validate":
                assert "valid: no objects" in run.stdout
            continue
        check_location(case, run, tmp_path)
        assert "nothing was changed" in run.stderr


def test_the_proxy_sees_and_refuses_engine_calls(docker_api: docker.APIClient, proxy: EngineProxy) -> None:
    """The zero counts above are not vacuous: calls made through the proxy are seen, writes refused."""
    proxy.reset()
    result = sk("get", "-o", "json", env={"DOCKER_HOST": proxy.url})
    assert result.code == 0, result.output
    assert any(r.method == "GET" and r.path == "/services" for r in proxy.requests)
    name = f"skhostile-{uuid.uuid4().hex[:8]}"
    client = docker.APIClient(base_url=proxy.url, version="auto")
    with pytest.raises(docker.errors.APIError) as refused:
        client.create_config(name, b"x")
    assert refused.value.status_code == 403
    assert not docker_api.configs(filters={"name": name})
    assert [str(r) for r in proxy.mutating()] == ["POST /configs/create"]
