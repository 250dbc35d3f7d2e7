"""String formats of names, labels, keys and ports (``apimachinery/pkg/util/validation``).

Each check returns the list of upstream error messages (empty when valid), shared by object
validation and by label-selector parsing so both word their errors identically.
"""

from __future__ import annotations

import re

def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """``RegexError``, including its double space between examples."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"

_QUALIFIED_NAME_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")


def _matches(fmt: str, value: str) -> bool:
    return re.fullmatch(fmt, value) is not None


def is_dns1123_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _matches(DNS1123_LABEL_FMT, value):
        if _matches(DNS1123_SUBDOMAIN_FMT, value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                                    "and must start and end with an alphanumeric character", DNS1123_LABEL_FMT,
                                    "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _matches(DNS1123_SUBDOMAIN_FMT, value):
        errs.append(regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                                "and must start and end with an alphanumeric character", DNS1123_SUBDOMAIN_FMT,
                                "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _matches(DNS1035_LABEL_FMT, value):
        errs.append(regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                                "alphabetic character, and end with an alphanumeric character", DNS1035_LABEL_FMT,
                                "my-name", "abc-123"))
    return errs


def _qualified_name_part(name: str) -> list[str]:
    errs = []
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _matches(QUALIFIED_NAME_FMT, name):
        errs.append("name part " + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """``IsQualifiedName``: an optional DNS subdomain prefix, ``/``, and a 63-character name."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs: list[str] = []
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + msg for msg in is_dns1123_subdomain(parts[0]))
    return errs + _qualified_name_part(parts[-1])


def is_valid_label_value(value: str) -> list[str]:
    errs = [max_len_error(63)] if len(value) > 63 else []
    if not _matches(LABEL_VALUE_FMT, value):
        errs.append(regex_error(_LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _chdir_prefix_errors(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    return ["must not start with '..'"] if value.startswith("..") else []


def is_config_map_key(value: str) -> list[str]:
    errs = [max_len_error(253)] if len(value) > 253 else []
    if not _matches(CONFIG_MAP_KEY_FMT, value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return errs + _chdir_prefix_errors(value)


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 of ``[-a-z0-9]``, at least one letter, no edge or double hyphens."""
    errs = [max_len_error(15)] if len(port) > 15 else []
    if not _matches("[-a-z0-9]+", port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_relaxed_env_var_name(value: str) -> list[str]:
    """``IsRelaxedEnvVarName``: the RelaxedEnvironmentVariableValidation gate is on in 1.32."""
    errs = [] if value else ["environment variable name must be non-empty"]
    if any(not (" " <= ch <= "~") or ch == "=" for ch in value):
        errs.append("a valid environment variable name must consist only of printable ASCII characters other than '='")
    return errs


def is_http_header_name(value: str) -> list[str]:
    if _matches(HTTP_HEADER_NAME_FMT, value):
        return []
    return [regex_error("a valid HTTP header must consist of alphanumeric characters or '-'", HTTP_HEADER_NAME_FMT,
                        "X-Header-Name")]


def is_valid_id(value: int) -> list[str]:
    """``IsValidUserID`` / ``IsValidGroupID``: a uint32."""
    return [] if 0 <= value <= 0xFFFFFFFF else [inclusive_range_error(0, 0xFFFFFFFF)]


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               '"': '\\"', "\\": "\\\\"}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote``: client-go parses warning texts with its inverse and drops what it cannot parse."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'
