"""dmbot: watch a Mastodon account's direct messages and act on them by rules."""

__version__ = "0.1.0"
