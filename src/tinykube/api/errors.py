"""API errors, each of which becomes one Kubernetes ``Status`` object.

Every failure a client can see is an :class:`ApiError`; the API server turns it into the
``metav1.Status`` body and HTTP code once, at the edge.  Field-level problems are
:class:`FieldError` values, formatted exactly as apimachinery's ``field.Error`` so that
kubectl prints ``The Pod "x" is invalid: spec.containers[0].image: Required value``.

    ApiError (code, reason)
    ├── 400 BadRequest            bad_request()
    ├── 401 Unauthorized          unauthorized()
    ├── 403 Forbidden             forbidden()
    ├── 404 NotFound              not_found()
    ├── 405 MethodNotAllowed      method_not_allowed()
    ├── 409 AlreadyExists         already_exists()
    ├── 409 Conflict              conflict()
    ├── 410 Expired               expired()
    ├── 413 RequestEntityTooLarge too_large()
    ├── 415 UnsupportedMediaType  unsupported_media_type()
    ├── 422 Invalid               invalid()   (details.causes from FieldErrors)
    └── 500 InternalError         internal()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


class ApiError(Exception):
    """A request failure that maps to one ``Status`` with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:  # Go omits an empty reason; kubectl then prints "Error from server: <message>"
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(name: str | None, kind: str, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """``pods "x" not found``: ``resource`` is the plural resource name."""
    return ApiError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found', _details(name, resource, group))


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists', _details(name, resource, group))


def conflict(resource: str, name: str, detail: str, group: str = "") -> ApiError:
    """Optimistic-concurrency failure, worded as the apiserver words it."""
    message = f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}'
    return ApiError(409, "Conflict", message, _details(name, resource, group))


STALE_OBJECT = "the object has been modified; please apply your changes to the latest version and try again"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str, resource: str = "", name: str = "", group: str = "") -> ApiError:
    return ApiError(403, "Forbidden", message, _details(name, resource, group) if resource else None)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def too_large(message: str = "the request is too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({content_type})')


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


# --- field errors (apimachinery/pkg/util/validation/field/errors.go) -------------------

_REASONS = {
    "Required value": "FieldValueRequired",
    "Invalid value": "FieldValueInvalid",
    "Duplicate value": "FieldValueDuplicate",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Not found": "FieldValueNotFound",
    "Internal error": "InternalError",
}

_NO_VALUE = object()


@dataclass(frozen=True)
class FieldError:
    """One field problem: ``type`` is the human type ("Required value", "Invalid value", ...)."""

    type: str
    field: str
    value: Any = _NO_VALUE
    detail: str = ""

    def body(self) -> str:
        """The text after ``field: `` exactly as ``field.Error.ErrorBody`` renders it."""
        if self.type in ("Required value", "Forbidden", "Too long", "Internal error") or self.value is _NO_VALUE:
            text = self.type
        else:
            text = f"{self.type}: {format_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def cause(self) -> dict[str, str]:
        return {"reason": _REASONS.get(self.type, "FieldValueInvalid"), "message": self.body(), "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def format_value(value: Any) -> str:
    """Render a value as Go's ``%v``/``%q`` would in a field error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return orjson.dumps(value).decode()


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required value", field, detail=detail)


def invalid_value(field: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("Invalid value", field, value, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate value", field, value)


def not_supported(field: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{s}"' for s in supported) if supported else ""
    return FieldError("Unsupported value", field, value, detail)


def forbidden_field(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail=detail)


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("Too long", field, detail=f"may not be more than {limit} bytes")


def not_found_field(field: str, value: Any) -> FieldError:
    return FieldError("Not found", field, value)


def invalid(kind: str, name: str, errors: list[FieldError], group: str = "") -> ApiError:
    """422 Invalid: ``Pod "x" is invalid: ...`` with one cause per field error."""
    qualified = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    details = _details(name, kind, group)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)
