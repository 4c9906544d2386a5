"""The error a user can fix; kept apart so the cheapest commands can import it."""


class ConfigError(Exception):
    """A mistake in the settings or the rules the user can fix: one sentence, exit code 2."""
