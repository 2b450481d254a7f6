"""`sagesf console serve | user add`: run the web console, and manage its users."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from console.component import CONSOLE
from console.settings import ConsoleSettings
from console.users import ROLES, Role, UserFile
from sagesf.config import load_settings
from sagesf.runner import run

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="The web console: serve it, and manage who may log in.")
user_app = typer.Typer(no_args_is_help=True, help="Console users (SAGESF_CONSOLE__USERS_FILE).")
app.add_typer(user_app, name="user")


@app.command("serve")
def serve(log_level: Annotated[str, typer.Option("--log-level")] = "INFO") -> None:
    """Run the console until SIGTERM/SIGINT (the same as `sagesf run console`)."""
    raise typer.Exit(run(CONSOLE, log_level=log_level))


@user_app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="the login name")],
    role: Annotated[list[str], typer.Option("--role", help=f"one of {', '.join(ROLES)}; repeat for several")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Add a user, or replace one's password and roles. The password is asked for (twice), or
    read from standard input with --password-stdin; it is stored as an argon2 hash."""
    unknown = [each for each in role if each not in ROLES]
    if unknown:
        typer.echo(f"error: unknown role(s) {', '.join(unknown)} (known: {', '.join(ROLES)})", err=True)
        raise typer.Exit(2)
    password = _password(password_stdin)
    users = UserFile(load_settings(ConsoleSettings).users_file)
    try:
        user = users.add(name, password, [_role(each) for each in role])
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{user.name} ({user.role_names}) saved in {users.path}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        typer.echo("error: the passwords differ", err=True)
        raise typer.Exit(2)
    return first


def _role(name: str) -> Role:
    return next(role for role in ROLES if role == name)
