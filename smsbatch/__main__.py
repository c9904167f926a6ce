from smsbatch.cli import entry

entry()
