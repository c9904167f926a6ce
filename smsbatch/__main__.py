"""`python -m smsbatch` and the `smsbatch` command.

The stop signals are caught here, before anything else is imported: a run
stopped at any moment (while Python loads numpy, while the config is read)
ends with its one line, its summary file and 130 or 143, never a
KeyboardInterrupt traceback."""

import signal

_received: list[int] = []  # the stop signals, in order; cli.entry() takes the list over


def _note(signum: int, frame: object) -> None:
    _received.append(signum)


def entry() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _note)
    from smsbatch.cli import entry as run  # the imports take a while: the handlers are in place

    run(_received)


if __name__ == "__main__":
    entry()
