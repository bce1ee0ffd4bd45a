"""Shell completion: ``eval "$(dlexp train -sc install=bash)"``, then tab completes.

Hydra's bash completion registers its function for the program (``dlexp``) and, at each
tab, runs ``dlexp -sc query=bash`` with the line typed so far in ``COMP_LINE``. The first
word after ``dlexp`` is a dlexp command, completed here; the rest of a ``dlexp train`` line
is Hydra's to complete (groups, options, keys), with the ``train`` word taken out so that
Hydra sees the line of an ordinary Hydra application.
"""

from __future__ import annotations

import os

from dlexp.errors import EXIT_OK


def complete(args: list[str]) -> int:
    """``dlexp -sc <install|uninstall|query>=<shell>`` (Hydra's ``--shell-completion``)."""
    from dlexp.cli import COMMANDS
    from dlexp.train_command import train_command

    line = os.environ.get("COMP_LINE")
    if line is None or not any(a.startswith("query=") for a in args[1:]):
        return train_command(args)  # install / uninstall: Hydra prints the script
    words = line.split()
    if len(words) == 1 or (len(words) == 2 and not line.endswith(" ")):  # the command word
        typed = words[1] if len(words) == 2 else ""
        print(" ".join(c for c in COMMANDS if c.startswith(typed)))
        return EXIT_OK
    if words[1] != "train":
        print("")  # the other commands take key=value arguments of their own
        return EXIT_OK
    program, _, rest = line.partition(" train")
    os.environ["COMP_LINE"] = program + rest
    return train_command(args)
