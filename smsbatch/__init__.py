"""smsbatch: simulate an SMS alert blast through a set of senders and watch it go."""

__version__ = "0.1.0"
