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
            prepare(url)
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
    return args.run(config, args)


if __name__ == "__main__":
    sys.exit(main())
