"""The cluster's PKI: a CA, the API server's serving certificate and client certificates.

Created once in the data dir on first start and reused after, so kubeconfigs written earlier
keep working across restarts.  EC P-256 keys: signing and TLS handshakes are several times
cheaper than RSA, which matters for a server that starts in well under a second.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BACKDATE = datetime.timedelta(minutes=5)  # issued certificates start this early: clocks of nodes may lag
SHORT_LIVED = datetime.timedelta(hours=8)  # the csrsigning policy's "Short": no backdated end below it
VALIDITY = datetime.timedelta(days=3650)  # ten years, as long-lived as k3s' self-signed CAs
SERVICE_IP = "10.43.0.1"  # first address of the default service CIDR: the `kubernetes` Service


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files in ``<data-dir>/tls``."""

    directory: str

    @property
    def ca_cert(self) -> str:
        return os.path.join(self.directory, "ca.crt")

    @property
    def ca_key(self) -> str:
        return os.path.join(self.directory, "ca.key")

    @property
    def serving_cert(self) -> str:
        return os.path.join(self.directory, "serving.crt")

    @property
    def serving_key(self) -> str:
        return os.path.join(self.directory, "serving.key")

    @property
    def admin_cert(self) -> str:
        return os.path.join(self.directory, "admin.crt")

    @property
    def admin_key(self) -> str:
        return os.path.join(self.directory, "admin.key")

    @property
    def kubelet_client_cert(self) -> str:
        """The API server's client certificate towards node agents (logs, exec)."""
        return os.path.join(self.directory, "apiserver-kubelet-client.crt")

    @property
    def kubelet_client_key(self) -> str:
        return os.path.join(self.directory, "apiserver-kubelet-client.key")

    @property
    def service_account_key(self) -> str:
        """The key that signs service-account tokens (kube-apiserver's --service-account-signing-key-file)."""
        return os.path.join(self.directory, "sa.key")


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: str, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY))


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    with open(pki.ca_cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert, load_key(pki.ca_key)


def _create_ca(pki: Pki) -> None:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tinykube-ca@{int(datetime.datetime.now().timestamp())}")])
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(pki.ca_key, _key_pem(key), private=True)
    _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM))


def issue(pki: Pki, common_name: str, organizations: list[str], *, server_names: list[str] | None = None,
          cert_path: str, key_path: str) -> None:
    """Sign a leaf certificate: a client certificate, or a serving one when ``server_names`` is given."""
    ca_cert, ca_key = _load_ca(pki)
    key = _new_key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_names else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (_builder(x509.Name(attrs), ca_cert.subject, key.public_key())
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_alt_names(server_names)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def serving_names(bind: str, advertise: str = "") -> list[str]:
    """Every name a client may use for the API server, as kube-apiserver's serving cert lists them."""
    names = ["127.0.0.1", "::1", "localhost", socket.gethostname(), SERVICE_IP, "kubernetes", "kubernetes.default",
             "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    for address in (bind, advertise):
        if address not in ("", "0.0.0.0", "::", *names):
            names.append(address)
    return names


def ensure(directory: str, bind: str, advertise: str = "") -> Pki:
    """Create whatever part of the PKI is missing; existing files are kept."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pki = Pki(directory)
    if not os.path.exists(pki.ca_cert):
        _create_ca(pki)
    if not os.path.exists(pki.serving_cert):
        issue(pki, "kube-apiserver", [], server_names=serving_names(bind, advertise), cert_path=pki.serving_cert,
              key_path=pki.serving_key)
    if not os.path.exists(pki.admin_cert):
        issue(pki, "system:admin", ["system:masters"], cert_path=pki.admin_cert, key_path=pki.admin_key)
    if not os.path.exists(pki.kubelet_client_cert):
        issue(pki, "kube-apiserver-kubelet-client", ["system:masters"], cert_path=pki.kubelet_client_cert,
              key_path=pki.kubelet_client_key)
    if not os.path.exists(pki.service_account_key):
        _write(pki.service_account_key, _key_pem(_new_key()), private=True)
    return pki


def _shared_paths(pki: Pki) -> dict[str, str]:
    return {os.path.basename(path): path for path in (pki.ca_cert, pki.ca_key, pki.service_account_key)}


def shared(pki: Pki) -> dict[str, str]:
    """What every API server of one cluster must have the same of: the CA and the service-account key (PEM by file name)."""
    return {name: _text(path) or "" for name, path in _shared_paths(pki).items()}


def adopt(pki: Pki, files: dict[str, str]) -> bool:
    """Make ``files`` (another server's :func:`shared`) this directory's; True if anything changed.

    Certificates signed by a CA other than the adopted one are removed, for :func:`ensure` to issue again.
    """
    os.makedirs(pki.directory, mode=0o700, exist_ok=True)
    paths = _shared_paths(pki)
    changed = [path for name, path in paths.items() if _text(path) != files[name]]
    for path in changed:
        _write(path, files[os.path.basename(path)].encode(), private=path.endswith(".key"))
    if pki.ca_cert in changed:
        for leaf in (pki.serving_cert, pki.serving_key, pki.admin_cert, pki.admin_key, pki.kubelet_client_cert,
                     pki.kubelet_client_key):
            if os.path.exists(leaf):
                os.remove(leaf)
    return bool(changed)


def _text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def load_key(path: str) -> ec.EllipticCurvePrivateKey:
    """An EC private key from a PEM file this module wrote (the service-account signing key)."""
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def self_signed(common_name: str, server_names: list[str], cert_path: str, key_path: str) -> None:
    """A serving certificate signed by its own key (a node agent's, as a kubelet without bootstrap)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (_builder(name, name, key.public_key())
            .add_extension(x509.SubjectAlternativeName(_alt_names(server_names)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def fingerprint(pem: bytes) -> str:
    """sha256 of the CA bundle bytes: what a join token pins (k3s' ``K10<hash>::`` tokens)."""
    return hashlib.sha256(pem).hexdigest()


def join_token(ca_pem: bytes, secret: str) -> str:
    return f"K10{fingerprint(ca_pem)}::server:{secret}"


def token_ca_hash(token: str) -> str:
    """The CA fingerprint a join token pins, or "" for a bare secret."""
    if token.startswith("K10") and "::" in token:
        return token[3:token.index("::")]
    return ""


def client_request(common_name: str, organizations: list[str]) -> tuple[bytes, bytes]:
    """A fresh key and a PEM certificate request for it (a kubelet's TLS bootstrap): (key, request)."""
    key = _new_key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return _key_pem(key), request.public_bytes(serialization.Encoding.PEM)


def sign_request(pki: Pki, request_pem: bytes, lifetime: datetime.timedelta, now: datetime.datetime) -> bytes:
    """The cluster CA's client certificate for a PEM request, with the request's subject (csrsigning's signer)."""
    request = x509.load_pem_x509_csr(request_pem)
    ca_cert, ca_key = _load_ca(pki)
    if lifetime >= SHORT_LIVED:
        lifetime -= BACKDATE  # as PermissiveSigningPolicy: only long certificates have their end backdated too
    lifetime = min(lifetime, ca_cert.not_valid_after_utc - now)  # never past the CA's own expiry
    cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca_cert.subject)
            .public_key(request.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def request_subject(request_pem: bytes) -> tuple[str, list[str]]:
    """The common name and organizations a PEM certificate request asks for; ValueError if it is not one."""
    request = x509.load_pem_x509_csr(request_pem)
    names = [a.value for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return (str(names[0]) if names else ""), [str(o) for o in orgs]


def certificate_usable(cert_path: str, ca_path: str, now: datetime.datetime) -> bool:
    """Whether a stored certificate was issued by this CA and is valid for a while yet (a restarted
    node reuses its bootstrap certificate rather than asking again)."""
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(ca_path, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
    except (FileNotFoundError, ValueError):
        return False
    return cert.issuer == ca.subject and cert.not_valid_after_utc - now > datetime.timedelta(hours=1)
