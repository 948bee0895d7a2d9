"""``python -m sohae_watch``: the same as the ``sohae-watch`` command."""

from sohae_watch.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="sohae-watch")
