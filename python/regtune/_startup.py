"""Ctrl-C while the ``regtune`` command is still starting: one line and exit status 130.

The command line promises that Ctrl-C ends it with ``regtune: interrupted`` and status 130
(:func:`regtune.cli.main`). ``main`` can only keep that promise once it runs; before that, the
console script (or ``python -m regtune``) imports this package, NumPy and ml_dtypes, which takes
about a second on a busy machine, and a SIGINT there printed a KeyboardInterrupt traceback from
inside whatever was being imported. So when this process *is* the command (and only then), the
package's first import installs a SIGINT handler that exits quietly, and ``main`` puts Python's
default handler back as soon as it starts. A program that merely imports regtune is not touched.
"""

from __future__ import annotations

import os
import signal
import sys

MESSAGE = "regtune: interrupted\n"
STATUS = 130


def interrupted(signum: int, frame: object) -> None:
    """The start-up SIGINT handler: the CLI's one line, then exit status 130 (SystemExit, so
    the interpreter still cleans up; nothing has been written yet)."""
    try:
        sys.stderr.write(MESSAGE)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # no usable stderr: the status still says it
        pass
    raise SystemExit(STATUS)


def _is_the_command() -> bool:
    """Whether this process runs the ``regtune`` command: the console script (``argv[0]`` named
    regtune) or ``python -m regtune`` (while ``-m`` imports the package, ``argv[0]`` is "-m";
    ``orig_argv`` names the module)."""
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(str(argv[0]))
    if name in ("regtune", "regtune.exe", "regtune-script.py"):
        return True
    orig = list(getattr(sys, "orig_argv", None) or [])[1:]
    skip = False
    for i, arg in enumerate(orig):  # the interpreter's options, up to -m, -c or a script
        if skip:
            skip = False
        elif arg == "-m":
            return orig[i + 1:i + 2] in (["regtune"], ["regtune.cli"])
        elif arg.startswith("-m"):
            return arg[2:] in ("regtune", "regtune.cli")
        elif arg in ("-W", "-X", "--check-hash-based-pycs"):
            skip = True  # an option with its value in the next argument
        elif arg == "-c" or arg == "-" or not arg.startswith("-"):
            return False
    return False


def install() -> None:
    """Install :func:`interrupted` for SIGINT when this process is the command and SIGINT still
    has Python's default handler (one the user set, or SIG_IGN, is kept)."""
    try:
        if _is_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, interrupted)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no signals here
        pass


def restore() -> None:
    """Python's default SIGINT handler again (KeyboardInterrupt), where :func:`install` put ours."""
    try:
        if signal.getsignal(signal.SIGINT) is interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError, AttributeError):
        pass


install()
