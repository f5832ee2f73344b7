"""``callhook admin <kind> create|list|delete`` and ``callhook admin account list|delete``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from callhook.cli import context
from callhook.cli.output import account_doc, account_label, emit_json, json_option, say, table
from callhook.domain.accounts import Account, AccountKind, format_org_code
from callhook.errors import RequestInvalid
from callhook.wiring import Components

#: the command group of each kind, with its --help text
KINDS: dict[AccountKind, str] = {
    AccountKind.ADMIN: "administrator",
    AccountKind.SERVICE_PROVIDER: "service-provider",
    AccountKind.ORGANIZATION: "organization",
    AccountKind.USER: "user",
}
KIND_NAMES = [kind.value for kind in AccountKind]


def _a(kind: AccountKind) -> str:
    return {
        AccountKind.ADMIN: "an administrator",
        AccountKind.SERVICE_PROVIDER: "a service provider",
        AccountKind.ORGANIZATION: "an organization",
        AccountKind.USER: "a user",
    }[kind]


def _create(
    ctx: click.Context,
    as_json: bool,
    kind: AccountKind,
    name: str,
    parent: int | None = None,
    code: int | None = None,
) -> None:
    async def work(components: Components) -> Account:
        return await components.provisioning.create_account(kind, name, parent, code)

    account = context.run(ctx, work)
    if as_json:
        emit_json(account_doc(account))
        return
    under = f" under account {account.parent_id}" if account.parent_id else ""
    say(f"created {account_label(account)}{under}")


def _list(ctx: click.Context, as_json: bool, kind: AccountKind | None) -> None:
    async def work(components: Components) -> list[Account]:
        return await components.provisioning.list_accounts(kind)

    found = context.run(ctx, work)
    if as_json:
        emit_json([account_doc(a) for a in found])
        return
    rows = [
        [
            str(a.id),
            a.kind.value,
            "  " * (len(a.ancestor_ids) - 1) + a.name if kind is None else a.name,
            format_org_code(a.org_code) if a.org_code is not None else "",
            str(a.parent_id or ""),
        ]
        for a in sorted(found, key=lambda a: a.ancestor_ids)
    ]
    table(["ID", "KIND", "NAME", "CODE", "PARENT"], rows, empty="no accounts")


def _delete(
    ctx: click.Context, as_json: bool, account_id: int, cascade: bool, kind: AccountKind | None
) -> None:
    async def work(components: Components) -> Account:
        prov = components.provisioning
        if kind is not None:
            found = await prov.get_account(account_id)
            if found.kind is not kind:
                raise RequestInvalid(
                    f"account {account_id} is {_a(found.kind)}, not {_a(kind)}; "
                    f"use `callhook admin {found.kind.value} delete {account_id}`"
                )
        return await prov.delete_account(account_id, cascade=cascade)

    account = context.run(ctx, work)
    if as_json:
        emit_json({"deleted": account_doc(account), "cascade": cascade})
        return
    below = " and everything below it" if cascade else ""
    say(f"deleted {account_label(account)}{below}")


def _delete_command(kind: AccountKind | None) -> click.Command:
    what = "an account" if kind is None else _a(kind)

    @click.command("delete", help=f"Delete {what} by id (with --cascade, all below it too).")
    @click.argument("account_id", metavar="ID", type=int)
    @click.option(
        "--cascade", is_flag=True, help="Also delete the accounts, extensions and apps below it."
    )
    @context.database_options
    @json_option
    @click.pass_context
    def command(ctx: click.Context, account_id: int, cascade: bool, as_json: bool) -> None:
        _delete(ctx, as_json, account_id, cascade, kind)

    return command


def _list_command(kind: AccountKind) -> click.Command:
    @click.command("list", help=f"List the {KINDS[kind]}s.")
    @context.database_options
    @json_option
    @click.pass_context
    def command(ctx: click.Context, as_json: bool) -> None:
        _list(ctx, as_json, kind)

    return command


def _kind_group(kind: AccountKind, create: Callable[..., Any], summary: str) -> click.Group:
    group = click.Group(KINDS[kind], help=summary)
    group.add_command(click.command("create", help=create.__doc__)(create))
    group.add_command(_list_command(kind))
    group.add_command(_delete_command(kind))
    return group


@context.database_options
@json_option
@click.argument("name")
@click.pass_context
def _create_admin(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create an Administrator account (the top of the hierarchy)."""
    _create(ctx, as_json, AccountKind.ADMIN, name)


@context.database_options
@json_option
@click.option(
    "--parent", type=int, metavar="ADMIN_ID", help="The administrator [default: the only one]."
)
@click.argument("name")
@click.pass_context
def _create_sp(ctx: click.Context, name: str, parent: int | None, as_json: bool) -> None:
    """Create a service provider under the administrator."""
    _create(ctx, as_json, AccountKind.SERVICE_PROVIDER, name, parent)


@context.database_options
@json_option
@click.option(
    "--code",
    type=click.IntRange(1, 999_999_999),
    help="Organization code, the prefix of its extended numbers (3 gives 0003*210) "
    "[default: the highest code + 1].",
)
@click.option("--parent", type=int, required=True, metavar="SP_ID", help="The service provider.")
@click.argument("name")
@click.pass_context
def _create_org(
    ctx: click.Context, name: str, parent: int, code: int | None, as_json: bool
) -> None:
    """Create an organization under a service provider."""
    _create(ctx, as_json, AccountKind.ORGANIZATION, name, parent, code)


@context.database_options
@json_option
@click.option("--parent", type=int, required=True, metavar="ORG_ID", help="The organization.")
@click.argument("name")
@click.pass_context
def _create_user(ctx: click.Context, name: str, parent: int, as_json: bool) -> None:
    """Create a user under an organization."""
    _create(ctx, as_json, AccountKind.USER, name, parent)


administrator = _kind_group(AccountKind.ADMIN, _create_admin, "Administrators: the top accounts.")
service_provider = _kind_group(
    AccountKind.SERVICE_PROVIDER, _create_sp, "Service providers: below the administrator."
)
organization = _kind_group(
    AccountKind.ORGANIZATION, _create_org, "Organizations: below a service provider, with a code."
)
user = _kind_group(AccountKind.USER, _create_user, "Users: below an organization; own extensions.")


@click.group()
def account() -> None:
    """Accounts of every kind."""


@account.command("list")
@click.option("--kind", type=click.Choice(KIND_NAMES), help="Only accounts of this kind.")
@context.database_options
@json_option
@click.pass_context
def list_accounts(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """List accounts (as a tree, unless --kind is given)."""
    _list(ctx, as_json, AccountKind(kind) if kind else None)


account.add_command(_delete_command(None))


@account.command("set-password")
@click.argument("account_id", metavar="ID", type=int)
@click.option("--login", help="The name to sign in with.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input, not a prompt."
)
@click.option("--clear", is_flag=True, help="Remove the account's login: it can no longer sign in.")
@context.database_options
@json_option
@click.pass_context
def set_password(
    ctx: click.Context,
    account_id: int,
    login: str | None,
    password_stdin: bool,
    clear: bool,
    as_json: bool,
) -> None:
    """Let an account sign in on /oauth/authorize.php (authorization-code grant).

    The password is stored only as an Argon2 hash.
    """
    password: str | None = None
    if clear:
        login = None
    else:
        if not login:
            raise click.UsageError("give --login NAME (or --clear)")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = str(click.prompt("Password", hide_input=True, confirmation_prompt=True))

    async def work(components: Components) -> Account:
        return await components.provisioning.set_sign_in(account_id, login, password)

    found = context.run(ctx, work)
    if as_json:
        emit_json({"account": account_doc(found), "login": login})
        return
    if login is None:
        say(f"{account_label(found)} can no longer sign in")
    else:
        say(f"{account_label(found)} signs in as {login!r}")
