"""The one error hierarchy. Raise these; only api/errors.py (and the CLI) render them."""

from __future__ import annotations


class CallhookError(Exception):
    """Root of every error callhook raises on purpose."""


class ConfigError(CallhookError):
    """A setting is missing or malformed; the message says which and how to fix it."""


class ServiceError(CallhookError):
    """An error with an HTTP status and a UAPI error code."""

    status: int = 400
    code: str = "request_invalid"
    default_message: str = "The request is invalid."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


def _err(name: str, status: int, code: str, message: str) -> type[ServiceError]:
    return type(name, (ServiceError,), {"status": status, "code": code, "default_message": message})


# PhoneCallEvent validation (contract section 5)
CreateTypeInvalid = _err(
    "CreateTypeInvalid", 400, "pcet_type_invalid", "Type must be 0, 1, 2, 3 or 4."
)
TypeInvalid = _err("TypeInvalid", 400, "pce_type_invalid", "Type must be 0, 1, 2, 3 or 4.")
MethodInvalid = _err(
    "MethodInvalid", 400, "pce_method_invalid", "Method must be 0 (GET) or 1 (POST)."
)
NoteInvalid = _err(
    "NoteInvalid", 400, "pce_note_invalid", "Note must be a string of at most 1024 characters."
)
UrlInvalid = _err(
    "UrlInvalid", 400, "pce_url_invalid", "URL must be an absolute http or https URL."
)
StatusInvalid = _err(
    "StatusInvalid", 400, "pce_status_invalid", "Status must be 0 (disabled) or 1 (enabled)."
)
EventIdInvalid = _err("EventIdInvalid", 400, "pce_id_invalid", "No such PhoneCallEvent.")
ExtensionInvalid = _err("ExtensionInvalid", 400, "extension_invalid", "The extension is invalid.")
UserInvalid = _err("UserInvalid", 400, "user_invalid", "The user id is invalid.")
AccessDenied = _err(
    "AccessDenied", 400, "pce_access_denied", "You may not manage the events of this extension."
)
RequestInvalid = _err("RequestInvalid", 400, "request_invalid", "The request is invalid.")
PayloadTooLarge = _err(
    "PayloadTooLarge", 413, "request_invalid", "The request body is larger than 1 MiB."
)
AdminOnly = _err("AdminOnly", 403, "admin_only", "Only an Administrator account may see this.")
Unauthenticated = _err("Unauthenticated", 401, "access_denied", "A valid access token is required.")
RouteNotFound = _err("RouteNotFound", 404, "not_found", "No such resource.")
MethodNotAllowed = _err("MethodNotAllowed", 405, "method_not_allowed", "Method not allowed here.")
InternalError = _err("InternalError", 500, "internal_server_error", "Internal server error.")


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests."

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Listing (contract section 4)
CountInvalid = _err(
    "CountInvalid", 400, "count_invalid", "count must be a whole number from 1 to 5000."
)
StartIndexInvalid = _err(
    "StartIndexInvalid",
    400,
    "startindex_invalid",
    "startIndex must be a whole number from 0 to 5000.",
)
FilterByInvalid = _err(
    "FilterByInvalid",
    400,
    "filterby_invalid",
    "filterBy must be one of id, type, method, status, url, note, modified.",
)
FilterOpInvalid = _err(
    "FilterOpInvalid",
    400,
    "filterop_invalid",
    "filterOp must be contains, equals, startsWith or present.",
)
FilterValueInvalid = _err(
    "FilterValueInvalid", 400, "filtervalue_invalid", "filterValue is invalid."
)
SortOrderInvalid = _err(
    "SortOrderInvalid", 400, "sortorder_invalid", "sortOrder must be ascending or descending."
)
FieldsInvalid = _err("FieldsInvalid", 400, "fields_invalid", "fields names an unknown field.")

# Ingest API (/callhook/v1/call-events)
CallEventInvalid = _err("CallEventInvalid", 400, "call_event_invalid", "The call event is invalid.")
SourceUnauthenticated = _err(
    "SourceUnauthenticated", 401, "access_denied", "A valid source token is required."
)

# Administration (CLI and /callhook/v1); not part of the UAPI contract
NotFound = _err("NotFound", 404, "not_found", "Not found.")
Conflict = _err("Conflict", 409, "conflict", "It already exists.")


class OAuthError(CallhookError):
    """An RFC 6749 section 5.2 error from the token or revocation endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}")
