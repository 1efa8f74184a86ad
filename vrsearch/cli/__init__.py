"""``vrsearch`` command line (typer).

Every user error (study file, data, option value) prints one line
``error: …`` on stderr and exits with code 2 — no traceback. The commands live
in one module per group: :mod:`~vrsearch.cli.study_commands` (validate, train,
run, resume), :mod:`~vrsearch.cli.method_commands` (methods),
:mod:`~vrsearch.cli.result_commands` (table, summary, report), :mod:`~vrsearch.cli.replay_command`
(replay) and
:mod:`~vrsearch.cli.data_commands` (data phantom, data realfiles).
"""

from __future__ import annotations

from vrsearch.cli import data_commands, method_commands, replay_command, result_commands, study_commands
from vrsearch.cli.base import app, data_app, fail, user_errors

# progress callbacks pickled by Tune before the command modules existed name vrsearch.cli._ConsoleEcho
_ConsoleEcho = study_commands._ConsoleEcho

__all__ = [
    "app",
    "data_app",
    "data_commands",
    "fail",
    "main",
    "method_commands",
    "replay_command",
    "result_commands",
    "study_commands",
    "user_errors",
]


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
