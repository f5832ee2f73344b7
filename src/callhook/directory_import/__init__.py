"""Importing a whole directory (accounts, extensions, apps) from a JSON or YAML file.

``document`` parses and validates the file; ``plan`` compares it with a snapshot of the
database. Both are pure; ``Provisioning.import_directory`` reads the snapshot and applies the
plan in one transaction.
"""

from callhook.directory_import.document import (
    AppSpec,
    DirectoryFile,
    ExtensionSpec,
    ImportInvalid,
    OrganizationSpec,
    ServiceProviderSpec,
    UserSpec,
    format_of,
    load,
    parse_text,
    validate,
)
from callhook.directory_import.plan import (
    KINDS,
    Action,
    CreateAccount,
    CreateApp,
    CreateExtension,
    Plan,
    Snapshot,
    UpdateAccount,
    UpdateApp,
    UpdateExtension,
    plan,
)

__all__ = [
    "KINDS",
    "Action",
    "AppSpec",
    "CreateAccount",
    "CreateApp",
    "CreateExtension",
    "DirectoryFile",
    "ExtensionSpec",
    "ImportInvalid",
    "OrganizationSpec",
    "Plan",
    "ServiceProviderSpec",
    "Snapshot",
    "UpdateAccount",
    "UpdateApp",
    "UpdateExtension",
    "UserSpec",
    "format_of",
    "load",
    "parse_text",
    "plan",
    "validate",
]
