"""Validation of CertificateSigningRequests (pkg/apis/certificates/validation), the essentials.

The request must be a PEM ``CERTIFICATE REQUEST``, the signer a qualified name, the usages known,
and a requested duration at least ten minutes; conditions must be of a known type.  Whether the
signer will honour the request is the signer's business, not validation's.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509

from tinykube.api.errors import FieldError, duplicate, invalid_value, not_supported, required
from tinykube.api.validation import name_is_dns_subdomain, validate_object_meta, validate_object_meta_update

Obj = dict[str, Any]

USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
          "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
          "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
CONDITION_TYPES = ("Approved", "Denied", "Failed")
MIN_EXPIRATION_SECONDS = 600


def request_pem(spec: Obj) -> bytes:
    """``spec.request`` as the PEM bytes it carries (the JSON field is base64)."""
    try:
        return base64.b64decode(spec.get("request") or "", validate=True)
    except (binascii.Error, ValueError):
        return b""


def _request_errors(spec: Obj) -> list[FieldError]:
    if not spec.get("request"):
        return [required("spec.request", "")]
    try:
        x509.load_pem_x509_csr(request_pem(spec))
    except ValueError:
        return [invalid_value("spec.request", "<request>", "PEM block type must be CERTIFICATE REQUEST")]
    return []


def _signer_errors(signer: str) -> list[FieldError]:
    if not signer:
        return [required("spec.signerName", "")]
    domain, slash, path = signer.partition("/")
    if not slash or not path or "." not in domain:
        return [invalid_value("spec.signerName", signer,
                              "must be a fully qualified domain and path of the form 'example.com/signer-name'")]
    return []


def _usage_errors(usages: list[Any]) -> list[FieldError]:
    if not usages:
        return [required("spec.usages", "usages must be provided")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, usage in enumerate(usages):
        if usage not in USAGES:
            errs.append(not_supported(f"spec.usages[{i}]", usage, list(USAGES)))
        elif usage in seen:
            errs.append(duplicate(f"spec.usages[{i}]", usage))
        seen.add(usage)
    return errs


def validate_csr(obj: Obj) -> list[FieldError]:
    """ValidateCertificateSigningRequestCreate."""
    spec = obj.get("spec") or {}
    errs = validate_object_meta(obj.get("metadata") or {}, False, name_is_dns_subdomain)
    errs += _request_errors(spec) + _signer_errors(spec.get("signerName") or "") + _usage_errors(spec.get("usages") or [])
    seconds = spec.get("expirationSeconds")
    if seconds is not None and seconds < MIN_EXPIRATION_SECONDS:
        errs.append(invalid_value("spec.expirationSeconds", seconds,
                                  "may not specify a duration less than 600 seconds (10 minutes)"))
    return errs + _condition_errors(obj)


def _condition_errors(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, condition in enumerate((obj.get("status") or {}).get("conditions") or []):
        kind = condition.get("type") or ""
        if not kind:
            errs.append(required(f"status.conditions[{i}].type", ""))
        elif kind in CONDITION_TYPES and kind in seen:
            errs.append(duplicate(f"status.conditions[{i}].type", kind))
        seen.add(kind)
    if {"Approved", "Denied"} <= seen:
        errs.append(invalid_value("status.conditions", "Approved, Denied", "Approved and Denied conditions are mutually exclusive"))
    return errs


def validate_csr_update(new: Obj, old: Obj) -> list[FieldError]:
    """Updates (main resource, /status, /approval): metadata rules and the conditions."""
    return validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {}) + _condition_errors(new)
