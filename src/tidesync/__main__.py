"""``python -m tidesync``: the same command as the ``tidesync`` script."""

from tidesync.cli import command

command()
