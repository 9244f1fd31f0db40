"""Every `pgwarden` command line the README and docker-compose.yml show is one the command
accepts as written (tests elsewhere run them: test_readme_quickstart, test_user_commands,
test_database_commands, test_compose, test_local_https)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pgwarden.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def shown_command_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    lines = [line for block in re.findall(r"```sh\n(.*?)```", readme, re.S) for line in block.splitlines()]
    # the compose file's header shows its commands indented: "#   docker-compose exec ..."
    lines += [line[1:].strip() for line in (ROOT / "docker-compose.yml").read_text().splitlines()
              if line.startswith("#   ")]
    found = []
    for line in lines:
        code = line.split(" # ")[0].split("   #")[0].strip()
        if re.match(r"^(\./scripts/pgwarden|pgwarden|docker-compose exec \S+ pgwarden) \w", code):
            found.append(code)
    return found


def test_the_readme_shows_the_commands_an_operator_needs() -> None:
    shown = " ".join(shown_command_lines())
    for command in ("up", "caddy", "user create", "user list", "user disable", "user enable", "user logout",
                    "user delete", "user reset-password", "psql", "db-url", "events", "backup", "restore"):
        assert f"pgwarden {command}" in shown, command


@pytest.mark.parametrize("line", shown_command_lines())
def test_each_shown_command_line_is_accepted(line: str) -> None:
    words = shlex.split(line.split(" < ")[0])
    argv = words[next(i for i, word in enumerate(words) if word.endswith("pgwarden")) + 1:]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    assert not rest or args.command == "psql", rest
