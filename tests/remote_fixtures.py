"""What remote engines need in tests: certificates, ssh keys, a real sshd, and swarmkeeper run where
the engines' addresses are.

Node addresses (10.231.0.x) exist only on the private bridge of an :class:`EngineCluster`, so
every swarmkeeper process here runs in the bridge's namespace (``ip netns exec <prefix>br``), as
a controller on another machine would; the test itself reaches the nodes through their unix
sockets. The sshd runs in a node's namespace and listens on that node's address only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cli_helpers import CliResult
from engines import EngineCluster, EngineNode, pid_alive

SWARMKEEPER = Path(sys.executable).parent / "swarmkeeper"
SSHD = Path("/usr/sbin/sshd")
SSHD_PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
SSH_PORT = 22

# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for the given addresses and a client certificate, all signed by the CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    addresses: Sequence[str] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if addresses:
        alt = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path, name: str, addresses: Sequence[str]) -> Pki:
    """``<folder>/<name>-{ca,server,client}…pem``: what ``dockerd --tlsverify`` and its clients need."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(f"{name} test CA", ca_key, None, ca_key, ca=True)
    files = Pki(
        ca=folder / f"{name}-ca.pem",
        server_cert=folder / f"{name}-server-cert.pem",
        server_key=folder / f"{name}-server-key.pem",
        client_cert=folder / f"{name}-client-cert.pem",
        client_key=folder / f"{name}-client-key.pem",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, usage, sans in (
        (files.server_cert, files.server_key, ExtendedKeyUsageOID.SERVER_AUTH, addresses),
        (files.client_cert, files.client_key, ExtendedKeyUsageOID.CLIENT_AUTH, ()),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(f"{name} {usage._name}", key, ca.subject, ca_key, usage=usage, addresses=sans)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
    return files


# ---------------------------------------------------------------------------
# ssh
# ---------------------------------------------------------------------------


def ssh_keypair(path: Path, comment: str) -> str:
    """An ed25519 key in OpenSSH format at ``path`` (mode 0600, as ssh insists); returns the public
    key line (``ssh-ed25519 AAAA… comment``)."""
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode()} {comment}"


def known_hosts_line(address: str, public_line: str, port: int = SSH_PORT) -> str:
    host = address if port == SSH_PORT else f"[{address}]:{port}"
    key_type, key = public_line.split()[:2]
    return f"{host} {key_type} {key}\n"


@dataclass
class SSHServer:
    """A real sshd in a node's namespace that logs root in (by key only) to that node's engine."""

    node: EngineNode
    host_public: str  # the host key's public line, for known_hosts
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"ssh://root@{self.node.address}"

    def known_hosts(self) -> str:
        return known_hosts_line(self.node.address, self.host_public)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def sshd(node: EngineNode, folder: Path, authorized: Sequence[str]) -> Iterator[SSHServer]:
    """sshd on ``<node address>:22`` inside the node's namespace, with a host key of its own.

    Logins get ``DOCKER_HOST`` of the node's socket (``SetEnv``), so ``docker system dial-stdio``
    (what an ssh:// client runs) reaches that node's dockerd. Stopped afterwards.
    """
    if not SSHD.exists():
        raise RuntimeError(f"{SSHD} is missing; run `./dev setup` (or apt-get install openssh-server)")
    folder.mkdir(parents=True, exist_ok=True)
    SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = folder / "ssh_host_ed25519_key"
    host_public = ssh_keypair(host_key, f"host {node.name}")
    (folder / "authorized_keys").write_text("".join(f"{line}\n" for line in authorized))
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {node.address}:{SSH_PORT}",
                f"HostKey {host_key}",
                "PidFile none",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "AllowUsers root",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The files live under the test's tmp_path, below the world-writable /tmp.
                "StrictModes no",
                f"SetEnv DOCKER_HOST={node.socket}",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    log = folder / "sshd.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node.name, str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = SSHServer(node, host_public, proc, log)
    try:
        deadline = time.monotonic() + 15
        while "Server listening on" not in server.logs():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd in {node.name} did not start:\n{server.logs()[-2000:]}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# swarmkeeper on the bridge
# ---------------------------------------------------------------------------


def sk_on_bridge(
    engines: EngineCluster, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 180
) -> CliResult:
    """``swarmkeeper ARGS`` as a real process in the bridge's namespace."""
    result = subprocess.run(
        engines.on_bridge([str(SWARMKEEPER), *(str(a) for a in args)]),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )
    return CliResult(result.returncode, result.stdout, result.stderr)


class Watch:
    """A ``swarmkeeper watch`` process; its log is a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None and pid_alive(self.proc.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@contextmanager
def watch_on_bridge(engines: EngineCluster, specs: Path, source: str, *args: str) -> Iterator[Watch]:
    """``swarmkeeper watch SPECS --source SOURCE -vv ARGS`` in the bridge's namespace; SIGTERM after."""
    log = specs.parent / f"watch-{source}.log"
    command = [str(SWARMKEEPER), "watch", str(specs), "--source", source, "-vv", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            engines.on_bridge(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
    watch = Watch(proc, log)
    try:
        yield watch
    finally:
        watch.stop()
