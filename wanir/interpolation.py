"""``${...}`` interpolations in values a user or a file supplies (overrides, ``--config-dir``
YAML files), and the option names those files select.

Only a whole-value reference to one other key is accepted: ``workload.width=${workload.height}``
(in a YAML file also a relative ``${.key}``). Refused, with one line that names the key and
never shows a resolved value:

- a resolver call, ``${name:...}`` (``${oc.env:HOME}``, ``${oc.decode:...}``,
  ``${oc.create:...}``, any custom resolver): it could read the environment;
- a reference inside a longer string or inside a list, one that names a group of keys
  rather than one value, and more than :data:`MAX_INTERPOLATIONS` references: references
  that copy strings or groups of keys can double at each step and grow exponentially when
  resolved;
- in a ``defaults:`` list of a ``--config-dir`` file, an option that is not a plain name
  (:func:`plain_option`) or a group that climbs out of the folder (``../hardware@hardware``,
  :func:`plain_group_key`): Hydra would load whatever YAML file a path names.
"""
from __future__ import annotations

import re

from .errors import ConfigError

#: ``${...}`` references one composed configuration may hold
MAX_INTERPOLATIONS = 256
#: longest option name accepted for a config group
MAX_OPTION_CHARS = 128

#: a whole-value reference: ${key}, ${group.key}, or relative ${.key} / ${..key}
_REF = re.compile(r"\$\{\s*\.*[A-Za-z_][\w-]*(?:\.[A-Za-z_0-9][\w-]*)*\s*\}")

_RESOLVER = ("a resolver interpolation (${name:...}, such as ${oc.env:...}) is not accepted: it could read the "
             "environment; write the value, or refer to one other key with ${group.key}")
NOT_WHOLE = "an interpolation must be the whole value and name one other key, such as ${workload.height}"


def plain_option(name) -> bool:
    """``name`` is a plain option name: a printable string of 1 to :data:`MAX_OPTION_CHARS`
    characters without '/', '\\\\', '..' or NUL, not starting with '.' or '~'."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_OPTION_CHARS and name.isprintable()
            and not name.startswith((".", "~")) and not any(s in name for s in ("/", "\\", "..", "\0")))


def plain_group_key(key) -> bool:
    """``key`` of a ``defaults:`` entry (``[override ]group[/sub][@package]``) stays inside the
    config folder: a printable string of at most :data:`MAX_OPTION_CHARS` characters with no
    '..', '\\', '~' or NUL and no path part starting with '.'."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_OPTION_CHARS or not key.isprintable():
        return False
    body = key[len("override "):] if key.startswith("override ") else key
    if any(s in body for s in ("..", "\\", "~", "\0")):
        return False
    return all(part and not part.startswith(".") for part in body.lstrip("/").replace("@", "/").split("/"))


def _is_resolver(s: str) -> bool:
    # Every resolver call has a ':' after its '${' (the grammar's COLON token), whatever
    # builds its name; a ':' after a '${' anywhere is refused, escaped or not.
    i = s.find("${")
    return i >= 0 and ":" in s[i:]


def check_text(where: str, s: str, whole: bool = True) -> bool:
    """Check a string value at ``where``; True when it is a ``${key}`` reference. ``whole``:
    a reference may stand here (a mapping value, not a list item or a mapping key)."""
    if "${" not in s:
        return False
    if _is_resolver(s):
        raise ConfigError(f"{where}: {_RESOLVER}")
    if not whole or not _REF.fullmatch(s.strip()):
        raise ConfigError(f"{where}: {NOT_WHOLE}")
    return True


def check_yaml_data(data, source: str, error=ConfigError) -> None:
    """Check a parsed ``--config-dir`` YAML file before Hydra reads it: no resolver call in
    any string (Hydra resolves those of a ``defaults:`` list while composing), and every
    option its ``defaults:`` list selects is a plain name (or null)."""
    stack = [("", data)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if _is_resolver(v):
                raise error(f"{source}: {where or 'the document'}: {_RESOLVER}")
        elif isinstance(v, dict):
            for k, x in v.items():
                name = k if isinstance(k, str) and len(k) <= 60 and k.isprintable() else repr(k)[:60]
                path = f"{where}.{name}" if where else name
                stack.append((f"{path} (a key)", k))
                stack.append((path, x))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
    defaults = data.get("defaults") if isinstance(data, dict) else None
    for entry in defaults if isinstance(defaults, list) else ():
        for key in entry if isinstance(entry, dict) else ():
            if not plain_group_key(key):
                shown = key if isinstance(key, str) and len(key) <= 60 and key.isprintable() else repr(key)[:60]
                raise error(f"{source}: the defaults list names the group '{shown}'; a group is a name under "
                            f"the config folder, such as hardware or override hardware@hardware (no '..', "
                            f"'\\', '~' or leading '.')")
        options = [entry] if isinstance(entry, str) else list(entry.values()) if isinstance(entry, dict) else []
        for o in options:
            for name in o if isinstance(o, list) else [o]:
                if name is not None and name != "_self_" and not plain_option(name):
                    shown = name if isinstance(name, str) and len(name) <= 60 and name.isprintable() else \
                        repr(name)[:60]
                    raise error(f"{source}: the defaults list selects '{shown}'; an option is a plain name "
                                f"(no '/', '\\', '..', leading '.' or '~')")
