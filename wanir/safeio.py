"""Bounded file input.

Every file wanir reads on a user's behalf goes through :func:`read_regular_file` (or
:func:`check_regular_file` where a library opens it): only regular files are opened (a FIFO,
a device such as ``/dev/zero`` or a directory is refused without blocking), and each kind of
file has a size cap (:data:`CAPS`). YAML is parsed with :func:`load_yaml`, which refuses a
document whose aliases expand to more than :data:`YAML_MAX_NODES` nodes (an alias bomb) or
that refers to itself. PyTorch zip checkpoints are checked member by member before
``torch.load`` sees them (``check_torch_zip`` in wanir/frontends/ckpt_read.py, under the caps
here). What wanir writes goes through wanir/safeout.py.

Errors are :class:`wanir.errors.ConfigError` (or the class a caller passes) with one line
that names the path and the limit.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import yaml

from .errors import ConfigError, WanirError
from .interpolation import check_yaml_data

MiB = 2**20

#: size cap in bytes of each kind of input file
CAPS = {
    "spec": 4 * MiB,                      # a YAML graph spec
    "config.json": 4 * MiB,               # a model's config.json
    "index.json": 64 * MiB,               # a sharded checkpoint's *.index.json
    "safetensors header": 100_000_000,    # the JSON header of a .safetensors file (the safetensors library's own cap)
    "hardware YAML": 1 * MiB,             # a hardware/*.yaml file
    "config YAML": 1 * MiB,               # any other YAML file of a --config-dir
    "checkpoint pickle": 256 * MiB,       # the pickle (data.pkl) of a PyTorch zip checkpoint, uncompressed
    "legacy checkpoint": 256 * MiB,       # a PyTorch checkpoint that is not a zip archive (read whole)
    "checkpoint member": 2**40,           # any other member of a PyTorch zip checkpoint, uncompressed
}
#: members a PyTorch zip checkpoint may hold
TORCH_ZIP_MAX_MEMBERS = 200_000
#: compressed members may expand at most this much (tensor data is stored uncompressed)
TORCH_ZIP_MAX_RATIO = 100
#: nodes a YAML document may expand to once aliases are followed
YAML_MAX_NODES = 200_000
#: nesting depth of a YAML document
YAML_MAX_DEPTH = 64
#: files and folders looked at in a --config-dir
CONFIG_DIR_MAX_ENTRIES = 5_000
#: longest number (characters, sign and exponent included) read from YAML, JSON or an
#: override: Python refuses to convert an integer of more than 4300 digits (a traceback), so
#: longer ones are refused before parsing; shorter ones reach the range checks, whose
#: messages name the key (docs/limits.md)
MAX_NUMBER_CHARS = 1000


def short(v, n: int = 80) -> str:
    """``repr(v)`` cut to ``n`` characters (for error messages that show a user's value)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 200:
        return f"<an integer of {len(str(abs(v))) if v.bit_length() < 10000 else 'thousands of'} digits>"
    try:
        r = repr(v)
    except Exception:  # noqa: BLE001 - a hostile __repr__, or too deep
        r = f"<{type(v).__name__}>"
    return r if len(r) <= n else r[: n - 3] + "..."


#: C0 and C1 control characters (ESC, BEL, CSI, ...) and DEL, as escapes a terminal shows as text
_CONTROL_CHARS = {i: f"\\x{i:02x}" for i in (*range(32), *range(127, 160))} | {9: "\\t", 10: "\\n", 13: "\\r"}


def printable(s, n: int | None = None) -> str:
    """``s`` (any value, as ``str``) with every control character (ESC and the other C0/C1
    codes, DEL) written as a visible escape such as ``\\x1b``, so a file-supplied string (a
    CSV label, a YAML name) cannot move the cursor, recolour or retitle a terminal; cut to
    ``n`` characters when ``n`` is given. Returns text."""
    text = str(s).translate(_CONTROL_CHARS)
    return text if n is None or len(text) <= n else text[: n - 3] + "..."


def _size(n: int) -> str:
    for unit, f in (("GiB", 2**30), ("MiB", MiB), ("KiB", 1024)):
        if n >= f:
            return f"{n / f:.4g} {unit}"
    return f"{n} bytes"


def _kind_error(path, kind, what, error):
    return error(f"{path}: {what}; a {kind} must be a regular file")


def _open_regular(path, kind: str, error: type[WanirError]):
    """Open ``path`` for reading without blocking (a FIFO opens at once); return (fd, size)."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise _kind_error(p, kind, "is a directory", error) from None
    except ValueError:  # an embedded NUL byte
        raise error(f"{short(p)}: not a valid path (it contains a NUL byte)") from None
    except OSError as e:
        raise error(f"{p}: cannot read the {kind}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            what = ("is a directory" if stat.S_ISDIR(st.st_mode) else "is a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "is a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                    else "is a socket" if stat.S_ISSOCK(st.st_mode) else "is not a regular file")
            raise _kind_error(p, kind, what, error)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def check_regular_file(path, kind: str, cap: int | None = None, error: type[WanirError] = ConfigError) -> int:
    """Check that ``path`` is a regular file (following links) of at most ``cap`` bytes
    (default: the cap of ``kind``, none if it has no cap); return its size."""
    fd, size = _open_regular(path, kind, error)
    os.close(fd)
    cap = CAPS.get(kind) if cap is None else cap
    if cap is not None and size > cap:
        raise error(f"{os.fspath(path)}: the {kind} is {_size(size)}; at most {_size(cap)} is read")
    return size


def read_regular_file(path, kind: str, cap: int | None = None, error: type[WanirError] = ConfigError) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``cap`` bytes (default
    ``CAPS[kind]``). Raises ``error`` (one line naming the path) otherwise."""
    cap = CAPS[kind] if cap is None else cap
    fd, size = _open_regular(path, kind, error)
    try:
        if size > cap:
            raise error(f"{os.fspath(path)}: the {kind} is {_size(size)}; at most {_size(cap)} is read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise error(f"{os.fspath(path)}: cannot read the {kind}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > cap:  # it grew while we read it
        raise error(f"{os.fspath(path)}: the {kind} is over {_size(cap)}; at most {_size(cap)} is read")
    return data


def read_text_file(path, kind: str, cap: int | None = None, error: type[WanirError] = ConfigError) -> str:
    """:func:`read_regular_file` decoded as UTF-8 (an error names the byte offset)."""
    data = read_regular_file(path, kind, cap, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{os.fspath(path)}: the {kind} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_header(path, kind: str, n: int, offset: int = 0, error: type[WanirError] = ConfigError) -> bytes:
    """Read ``n`` bytes at ``offset`` of the regular file ``path`` (``n`` checked against the
    cap of ``kind`` first)."""
    cap = CAPS[kind]
    if n > cap:
        raise error(f"{os.fspath(path)}: the {kind} would be {_size(n)}; at most {_size(cap)} is read")
    fd, _ = _open_regular(path, kind, error)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            f.seek(offset)
            return f.read(n)
    except OSError as e:
        raise error(f"{os.fspath(path)}: cannot read the {kind}: {e.strerror or e}") from None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- YAML


def _expanded_nodes(root, source: str, error, max_nodes: int, max_depth: int) -> None:
    """Raise ``error`` when the node graph under ``root`` expands (aliases followed) to more
    than ``max_nodes`` nodes, nests deeper than ``max_depth`` or contains itself."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: a shared (aliased) node is sized once and counted at every use
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            if isinstance(node, yaml.SequenceNode):
                kids = node.value
            elif isinstance(node, yaml.MappingNode):
                kids = [x for kv in node.value for x in kv]
            else:
                kids = []
            total = 1 + sum(sizes[id(k)] for k in kids)
            depth = 1 + max((depths[id(k)] for k in kids), default=0)
            if total > max_nodes:
                raise error(f"{source}: the YAML expands to more than {max_nodes} values once its aliases "
                            f"(*name) are followed; refused")
            if depth > max_depth:
                raise error(f"{source}: the YAML nests deeper than {max_depth} levels; refused")
            sizes[nid], depths[nid] = total, depth
            continue
        if nid in sizes:
            continue
        if nid in on_path:
            mark = node.start_mark
            raise error(f"{source}:{mark.line + 1}:{mark.column + 1}: the YAML contains itself "
                        f"(a recursive alias); refused")
        on_path.add(nid)
        stack.append((node, True))
        if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            mark = node.start_mark
            raise error(f"{source}:{mark.line + 1}:{mark.column + 1}: a number of {len(node.value)} characters; "
                        f"at most {MAX_NUMBER_CHARS} are read")
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, source, error)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((k, False) for k in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((x, False) for kv in node.value for x in kv)


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _no_duplicate_keys(node, source: str, error) -> None:
    """Raise ``error`` when a YAML mapping node names one scalar key twice (PyYAML would keep
    the last silently; OmegaConf and Hydra refuse it with a traceback)."""
    seen: dict = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        if k.value in seen:
            mark = k.start_mark
            raise error(f"{source}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: duplicate key "
                        f"{printable(short(k.value, 60))} "
                        f"(first on line {seen[k.value] + 1}); a key may appear once in a mapping")
        seen[k.value] = k.start_mark.line


def load_yaml(text: str, source: str = "<string>", loader=None, error: type[WanirError] = ConfigError,
              max_nodes: int = YAML_MAX_NODES, max_depth: int = YAML_MAX_DEPTH):
    """Parse one YAML document with ``loader`` (default ``yaml.SafeLoader``, libyaml's
    ``CSafeLoader`` when PyYAML was built with it: the same safe constructors), refusing one that
    expands (aliases followed) to more than ``max_nodes`` values, nests deeper than
    ``max_depth`` or refers to itself. yaml.YAMLError propagates (callers word it)."""
    loader_cls = loader or getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml's parser when built with it
    ld = loader_cls(text)
    try:
        try:
            node = ld.get_single_node()
        except RecursionError:
            raise error(f"{source}: the YAML nests too deeply; refused") from None
        except yaml.YAMLError as e:     # libyaml stops deep nesting itself ("while increasing flow level")
            if "flow level" in str(e) or "nesting" in str(e):
                raise error(f"{source}: the YAML nests too deeply; refused") from None
            raise
        if node is None:
            return None
        _expanded_nodes(node, source, error, max_nodes, max_depth)
        return ld.construct_document(node)
    finally:
        ld.dispose()


def _compose_all(loader_cls, text: str) -> list:
    """The node graphs of every document of ``text`` (aliases shared, nothing constructed)."""
    ld = loader_cls(text)
    try:
        nodes = []
        while ld.check_node():
            node = ld.get_node()
            if node is not None:
                nodes.append(node)
        return nodes
    finally:
        ld.dispose()


def check_yaml_text(text: str, source: str, error: type[WanirError] = ConfigError) -> None:
    """Raise ``error`` when ``text`` is not YAML wanir will load (syntax, alias bomb, depth).
    A document libyaml composes and the checks pass is accepted there (the loaders parse
    with libyaml too); anything else is checked again by PyYAML's own parser, whose message
    (line, column, problem) is the one raised."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            for node in _compose_all(fast, text):
                _expanded_nodes(node, source, error, YAML_MAX_NODES, YAML_MAX_DEPTH)
            return
        except (yaml.YAMLError, RecursionError, WanirError):
            pass        # refused: worded below, as PyYAML's parser finds it
    try:
        nodes = _compose_all(yaml.SafeLoader, text)
    except RecursionError:
        raise error(f"{source}: the YAML nests too deeply; refused") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        raise error(f"{where}: YAML syntax error: {getattr(e, 'problem', None) or short(str(e), 120)}") from None
    for node in nodes:
        _expanded_nodes(node, source, error, YAML_MAX_NODES, YAML_MAX_DEPTH)


_CHECKED_DIRS: dict = {}


def check_config_dir(config_dir, error: type[WanirError] = ConfigError) -> None:
    """Check every ``*.yaml`` file of a user's ``--config-dir`` before Hydra reads it: regular
    files under the size cap, YAML without alias bombs. Remembered per (path, size, mtime)."""
    root = Path(config_dir)
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):   # Hydra follows links too
        dirnames.sort()
        seen += len(dirnames)
        if seen > CONFIG_DIR_MAX_ENTRIES or dirpath.count(os.sep) - str(root).count(os.sep) > 8:
            raise error(f"--config-dir {root}: more than {CONFIG_DIR_MAX_ENTRIES} entries or 8 levels of "
                        f"folders (a link loop?); refused")
        for name in sorted(filenames):
            seen += 1
            if seen > CONFIG_DIR_MAX_ENTRIES:
                raise error(f"--config-dir {root}: more than {CONFIG_DIR_MAX_ENTRIES} entries; refused")
            if not name.endswith((".yaml", ".yml")):
                continue
            p = os.path.join(dirpath, name)
            kind = "hardware YAML" if Path(dirpath).name == "hardware" else "config YAML"
            try:
                st = os.stat(p)
            except OSError as e:
                raise error(f"{p}: cannot read the {kind}: {e.strerror or e}") from None
            key = (p, st.st_size, st.st_mtime_ns, st.st_mode)
            if key in _CHECKED_DIRS:
                continue
            text = read_text_file(p, kind, error=error)
            check_yaml_text(text, p, error)
            _check_config_yaml(text, p, error)
            _CHECKED_DIRS[key] = True
            if len(_CHECKED_DIRS) > 10_000:
                _CHECKED_DIRS.clear()


def _check_config_yaml(text: str, source: str, error) -> None:
    """No resolver interpolation (``${oc.env:...}``) anywhere in a --config-dir file, and
    plain option names in its defaults list (wanir.interpolation.check_yaml_data)."""
    try:
        data = load_yaml(text, source, error=error)
    except yaml.YAMLError:   # not one document: Hydra's own error names the file
        return
    check_yaml_data(data, source, error)


# ----------------------------------------------------------------------------- JSON


def load_json(text: str | bytes, source: str, error: type[WanirError] = ConfigError):
    """``json.loads(text)`` that refuses a number longer than :data:`MAX_NUMBER_CHARS`
    characters (instead of Python's own ValueError at 4300 digits, or a huge integer that
    later arithmetic meets). ValueError (JSONDecodeError) and RecursionError propagate
    for the caller to word. Returns the parsed value."""
    def _num(kind):
        def parse(tok: str):
            if len(tok) > MAX_NUMBER_CHARS:
                raise error(f"{source}: a number of {len(tok)} characters; at most {MAX_NUMBER_CHARS} are read")
            return kind(tok)
        return parse

    return json.loads(text, parse_int=_num(int), parse_float=_num(float))


def check_number_runs(text: str, where: str, error: type[WanirError] = ConfigError) -> None:
    """Raise ``error`` when ``text`` (an override, a field) holds a run of more than
    :data:`MAX_NUMBER_CHARS` digits."""
    m = re.search(r"\d{%d,}" % (MAX_NUMBER_CHARS + 1), text)
    if m:
        run = len(re.match(r"\d*", text[m.start():]).group())
        raise error(f"{where}: a number of {run} digits; at most {MAX_NUMBER_CHARS} characters are read")
