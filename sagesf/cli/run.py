"""`sagesf run <component>`: the command line of the process runner (sagesf.runner).

Only the named component's module is imported (the processors import faust, which is slow to
load); `sagesf run --help` lists the installed components from their entry points alone.
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from sagesf.config import Settings
from sagesf.runner import ENTRY_POINTS, Component, component, run

__all__ = ["component_app", "run_command"]

LogLevel = Annotated[
    str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.", show_default=True)
]
Once = Annotated[bool, typer.Option("--once", help="Do what is waiting once, then exit.")]


RUN_HELP = (
    "Run one sagesf process until SIGTERM/SIGINT: `sagesf run COMPONENT [--log-level LEVEL]`. "
    "Settings come from SAGESF_* variables (or the file named by SAGESF_ENV_FILE); a wrong one stops "
    "it at once with one line naming the variable, exit 2. `sagesf run COMPONENT --help` lists what "
    "it reads."
)


def run_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="COMPONENT", show_default=False)] = None,
) -> None:
    if name is None or name in ("--help", "-h"):
        typer.echo(ctx.get_help() + "\n\nComponents: " + ", ".join(_names()))
        raise typer.Exit(0 if name else 2)
    if name not in _names():
        typer.echo(f"error: no component {name!r} (installed: {', '.join(_names())})", err=True)
        raise typer.Exit(2)
    typer.main.get_command(component_app(component(name))).main(args=ctx.args, prog_name=f"sagesf run {name}")


run_command.__doc__ = RUN_HELP
RUN_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _names() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(point.name for point in entry_points(group=ENTRY_POINTS))


def component_app(component: Component) -> typer.Typer:
    """A one-command app for `python -m <module>` aliases of `sagesf run <name>`."""
    app = typer.Typer(add_completion=False)
    _add(app, component)
    return app


def _add(app: typer.Typer, component: Component) -> None:
    def start(log_level: str, once: bool) -> None:
        raise typer.Exit(run(component, log_level=log_level.upper(), once=once))

    if component.once:

        def command(log_level: LogLevel = "INFO", once: Once = False) -> None:
            start(log_level, once)

    else:

        def command(log_level: LogLevel = "INFO") -> None:  # type: ignore[misc]
            start(log_level, False)

    app.command(component.name, help=component.summary, epilog=settings_help(component))(command)


def settings_help(component: Component) -> str:
    """The environment variables the component reads, one paragraph per prefix, with defaults."""
    classes: tuple[type[BaseSettings], ...] = (Settings, *component.settings)
    paragraphs = [_variables(cls) for cls in classes]
    return "Settings (environment variables; = default):\n\n" + "\n\n".join(paragraphs)


def _variables(cls: type[BaseSettings]) -> str:
    prefix = str(cls.model_config.get("env_prefix") or "")
    names = []
    for name, info in cls.model_fields.items():
        var = name.upper()
        nested = info.annotation if isinstance(info.annotation, type) else None
        if nested is not None and issubclass(nested, BaseModel):
            names.append(f"{var}__*")
        elif info.is_required():
            names.append(f"{var} (required)")
        elif "SecretStr" in repr(info.annotation):
            names.append(f"{var} (secret)")
        else:
            default = info.get_default(call_default_factory=True)
            shown = default if isinstance(default, str | int | float | bool) else None
            names.append(var if shown in (None, "") else f"{var}={shown}")
    return f"{prefix}: " + ", ".join(names)
