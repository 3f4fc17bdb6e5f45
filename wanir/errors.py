"""Error types. Every error wanir raises for bad input is a WanirError (a ValueError),
whose message says what was wrong, where (config key, scope path or YAML path) and what
is allowed."""


_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


class WanirError(ValueError):
    """Base class of every user-facing wanir error. Its message is always one line: control
    characters a user's input brought into it (a value name with a newline, say) are escaped."""

    def __init__(self, message="", *args):
        if isinstance(message, str):
            message = message.translate(_CONTROL)
        super().__init__(message, *args)


class ShapeError(WanirError):
    """A shape rule rejected its inputs (message names scope path, op and shapes)."""


class GraphError(WanirError):
    """A graph is malformed (undefined value, cycle, inconsistent types)."""


class ConfigError(WanirError):
    """A configuration key or value is wrong (message names the key and what is allowed)."""


class SpecError(WanirError):
    """A YAML graph spec is malformed (message names the YAML path)."""


class UnknownOpError(WanirError):
    """An op kind has no definition, or a pass has no rule for it."""
