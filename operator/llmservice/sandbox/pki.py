"""Certificates for a control plane that only ever listens on loopback.

One CA; one certificate in `system:masters` that the API server serves with and that every
admin client (controller-manager, scheduler, kwok, the kubeconfig) presents; a separate RSA
key that signs service-account tokens. openssl does the work, so the sandbox needs no
cryptography library of its own. The certificates live as long as the sandbox does.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llmservice.sandbox.errors import SandboxError

VALID_DAYS = 30
SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the sandbox's keys and certificates."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"


def _openssl(openssl: str, *args: str) -> None:
    result = subprocess.run(  # noqa: S603
        [openssl, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SandboxError(f"openssl {args[0]} failed: {last}", "check the openssl installation")


def generate(directory: Path, first_service_ip: str) -> Pki:
    """Create the CA, the admin/serving certificate and the service-account key pair."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SandboxError("openssl not found", "install openssl (apt-get install openssl)")
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        openssl, "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048",
        "-keyout", str(pki.ca_key), "-out", str(pki.ca_cert), "-days", str(VALID_DAYS),
        "-subj", "/CN=llmservice-sandbox-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    csr = directory / "admin.csr"
    _openssl(
        openssl, "req", "-new", "-nodes", "-newkey", "rsa:2048",
        "-keyout", str(pki.admin_key), "-out", str(csr),
        "-subj", "/O=system:masters/CN=llmservice-sandbox-admin",
    )  # fmt: skip
    names = ",".join(f"DNS:{n}" for n in SERVER_NAMES)
    extensions = directory / "admin.ext"
    extensions.write_text(
        f"subjectAltName={names},IP:127.0.0.1,IP:{first_service_ip}\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "basicConstraints=CA:FALSE\n",
        encoding="utf-8",
    )
    _openssl(
        openssl, "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert),
        "-CAkey", str(pki.ca_key), "-CAcreateserial", "-out", str(pki.admin_cert),
        "-days", str(VALID_DAYS), "-extfile", str(extensions),
    )  # fmt: skip
    _openssl(openssl, "genrsa", "-out", str(pki.service_account_key), "2048")
    _openssl(
        openssl, "rsa", "-in", str(pki.service_account_key), "-pubout",
        "-out", str(pki.service_account_pub),
    )  # fmt: skip
    for path in (pki.ca_key, pki.admin_key, pki.service_account_key):
        path.chmod(0o600)
    return pki
