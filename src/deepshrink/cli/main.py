"""`deepshrink` console entry point. Each command module registers its commands on the shared
click group; errors from the library become one red line and a non-zero exit (traceback with --debug)."""

from __future__ import annotations

import importlib
import sys

import click
from rich.console import Console
from rich.text import Text

from deepshrink.errors import DeepShrinkError

err_console = Console(stderr=True)

# Command modules, each exposing `register(group)`; one per family keeps this file small.
COMMAND_MODULES = (
    "deepshrink.cli.foundation",
    "deepshrink.cli.prune",
    "deepshrink.cli.distill",
    "deepshrink.cli.quantize",
    "deepshrink.cli.decompose",
    "deepshrink.cli.search",
    "deepshrink.cli.compress",
    "deepshrink.cli.detect",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="deepshrink")
def cli(debug: bool) -> None:
    """DeepShrink: pruning, quantization, distillation, low-rank and search for PyTorch models."""


def _register_commands() -> None:
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that family's CLI has not been written yet
                continue
            raise
        module.register(cli)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _register_commands()
    try:
        cli.main(args=args, prog_name="deepshrink", standalone_mode=False)
    except DeepShrinkError as exc:
        if debug:
            raise
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        err_console.print("[red]aborted[/]")
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # anything unexpected: still one line unless --debug
        if debug:
            raise
        message = f"{type(exc).__name__}: {exc} (re-run with --debug for the traceback)"
        err_console.print(Text.assemble(("internal error: ", "bold red"), message), soft_wrap=True)
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
