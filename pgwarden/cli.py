"""The `pgwarden` command: run the whole stack, one part of it, migrations, or admin tasks."""

from __future__ import annotations

import argparse
import logging
import sys

from core.config import Config, ConfigError, redact_dsn

__all__ = ["main"]

log = logging.getLogger("pgwarden")


def _migrate(config: Config, args: argparse.Namespace) -> int:
    from core.database import opened, prepare
    from db import migrate

    with opened(config) as url:
        log.info("migrating %s", redact_dsn(url))
        if args.downgrade:
            migrate.downgrade(url, args.downgrade)
        else:
            prepare(url, config.signing_key_secret())
        log.info("database at revision %s", migrate.current_revision(url))
    return 0


def _api(config: Config, args: argparse.Namespace) -> int:
    from vaultapi.app import serve

    return serve(config)


def _hub(config: Config, args: argparse.Namespace) -> int:
    from wshub.app import serve

    return serve(config)


def _up(config: Config, args: argparse.Namespace) -> int:
    from pgwarden.supervisor import run

    return run(config)


def _user_create(config: Config, args: argparse.Namespace) -> int:
    from vaultapi.admin import PasswordInputError, create_user_command, read_master_password

    try:
        password = read_master_password(sys.stdin, from_stdin=args.password_stdin)
    except PasswordInputError as error:
        print(f"pgwarden user create: {error}", file=sys.stderr)
        return 2
    return create_user_command(config, email=args.email, password=password, name=args.name)


class _NoPasswordArgument(argparse.Action):
    """Refuses the old --password option without repeating its value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.error("--password is not accepted (a command line is visible to every user of the machine):"
                     " type the password when asked, or pipe it in with --password-stdin")


def _keys_list(config: Config, args: argparse.Namespace) -> int:
    from pgwarden.keys import list_command

    return list_command(config)


def _keys_rotate(config: Config, args: argparse.Namespace) -> int:
    from pgwarden.keys import rotate_command

    return rotate_command(config, retire_now=args.retire_now)


def _db_grant_hub(config: Config, args: argparse.Namespace) -> int:
    import asyncio
    import os

    from core.database import opened
    from db.roles import grant_hub, hub_grants

    if args.print:
        print(hub_grants(args.role), end="")
        return 0
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            log.error("%s is not set: it should hold the password of role %s", args.password_env, args.role)
            return 2
    with opened(config) as url:
        asyncio.run(grant_hub(url, args.role, password))
        log.info("role %s may now run the hub on %s", args.role, redact_dsn(url))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgwarden", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run everything: database (embedded unless DATABASE_URL), API and hub")
    up.set_defaults(run=_up)
    api = commands.add_parser("api", help="run the REST API (API_ADDRESS:API_PORT)")
    api.set_defaults(run=_api)
    hub = commands.add_parser("hub", help="run the notifications hub (WEBSOCKET_ADDRESS:WEBSOCKET_PORT)")
    hub.set_defaults(run=_hub)

    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    # no abbreviations: "--password" must not quietly mean --password-stdin
    create = user_commands.add_parser("create", help="create an account as a client would (keys derived here)",
                                      allow_abbrev=False)
    create.add_argument("--email", required=True)
    create.add_argument("--password-stdin", action="store_true",
                        help="read the master password from standard input instead of asking twice on the terminal")
    create.add_argument("--password", action=_NoPasswordArgument, help=argparse.SUPPRESS)
    create.add_argument("--name", default=None)
    create.set_defaults(run=_user_create)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead (base: empty)")
    migrate.set_defaults(run=_migrate)

    keys = commands.add_parser("keys", help="the keys that sign access tokens")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    keys_list = keys_commands.add_parser("list", help="every key: id, created, signing, verifying or retired")
    keys_list.set_defaults(run=_keys_list)
    rotate = keys_commands.add_parser(
        "rotate", help="sign with a new key; older ones verify until the tokens they signed expire")
    rotate.add_argument("--retire-now", action="store_true",
                        help="older keys stop verifying at once (a leaked key); clients renew with refresh tokens")
    rotate.set_defaults(run=_keys_rotate)

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    grant = db_commands.add_parser(
        "grant-hub", help="give ROLE what the hub needs and no more (run again after migrating)")
    grant.add_argument("role")
    grant.add_argument("--password-env", metavar="VARIABLE",
                       help="make ROLE (LOGIN) if missing, and set its password, from this environment variable")
    grant.add_argument("--print", action="store_true", help="print the SQL instead of applying it")
    grant.set_defaults(run=_db_grant_hub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("pgserver", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from core.database import TransactionPooler
    from core.tokens import SigningKeyError
    from db.roles import RoleError

    try:
        return args.run(config, args)
    except (SigningKeyError, RoleError, TransactionPooler) as error:  # the operator's to fix: the reason, no traceback
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
