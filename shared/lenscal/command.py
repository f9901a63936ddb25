"""Running a typer app the lenscal way: bad input (a LenscalError, input that fails
validation, an option out of range, a file that cannot be read or written) is one line on
stderr and exit status 2, never a traceback. Free of the command tree, so a single service
(the torch-free scorer) runs its command without importing the others."""

from __future__ import annotations

import errno
import sys

import typer
from pydantic import ValidationError

from lenscal.errors import LenscalError
from lenscal.validation import describe

try:  # typer vendors click (as typer._click) since 0.2x; its commands raise those classes
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - an older typer over click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

#: OS errors that are the user's to fix (a path that is missing, unreadable, unwritable, full,
#: or of the wrong kind), as opposed to a failure of lenscal itself.
USER_ERRNOS = {
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.ELOOP,
}


def fail(message: str) -> None:
    # One line even when the message quotes several (a YAML parser's, a service's log).
    typer.echo("error: " + " ".join(line.strip() for line in message.splitlines() if line.strip()), err=True)
    sys.exit(2)


def run_app(app: typer.Typer) -> None:
    try:
        result = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click_errors.UsageError as exc:  # an unknown option, a value out of range, a missing one
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        fail(exc.format_message() + where)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except LenscalError as exc:
        fail(str(exc))
    except ValidationError as exc:  # a typed config or spec built from user input
        fail(f"invalid {exc.title}: {describe(exc)}")
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
    if isinstance(result, int) and not isinstance(result, bool):  # click.exceptions.Exit's code
        sys.exit(result)
