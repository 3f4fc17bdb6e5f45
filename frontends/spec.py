"""YAML graph specs: describe a model that has no Python frontend in a YAML file and lower
it into the IR with the GraphBuilder.

    >>> from wanir.frontends.spec import load_spec
    >>> graph = load_spec("examples/specs/tiny_umt5.yaml")          # doctest: +SKIP

The format is documented in docs/specs.md. In short::

    name: my_model
    weight_dtype: bf16                 # optional storage dtype of weights
    inputs:
      x: {shape: [1, 16, 64], dtype: bf16}
    ops:                               # run first, in order
      - {op: rmsnorm, name: h}
    blocks:                            # then these, in order
      - name: layers
        repeat: 4                      # distinct weights per copy (loop: shared weights)
        output: x                      # the value that leaves the block
        ops:
          - {op: linear, name: h, input: x, attrs: {out_features: 64}}
          - {op: add, name: x, inputs: [x, h]}

Every error is a :class:`wanir.errors.SpecError` whose message starts with the YAML path
of the offending entry (``blocks[0].ops[3].attrs.kernel: ...``).
"""
from __future__ import annotations

import difflib
import os
import re
from contextlib import contextmanager
from typing import Any

import yaml

from wanir.builder import GraphBuilder
from wanir.dtypes import DTYPES, get_dtype
from wanir.errors import SpecError, WanirError
from wanir.graph import Graph, Value
from wanir.ops import get_op
from wanir.safeio import load_yaml, read_text_file, short

#: allowed keys of each kind of mapping (order is the documented order)
TOP_KEYS = ("name", "description", "weight_dtype", "inputs", "stages", "ops", "blocks")
STAGE_KEYS = ("name", "invocations", "description", "weight_dtype", "inputs", "ops", "blocks")
BLOCK_KEYS = ("name", "repeat", "loop", "description", "weight_dtype", "output", "ops", "blocks")
OP_KEYS = ("op", "name", "inputs", "input", "attrs", "weight_dtype")
INPUT_KEYS = ("shape", "dtype")
#: deepest allowed nesting of blocks
MAX_DEPTH = 32
#: largest repeat / loop / invocations count
MAX_COUNT = 1_000_000
#: largest input dimension, and most dimensions of an input
MAX_DIM = 2**40
MAX_RANK = 16
#: dtype of an input that does not name one
DEFAULT_INPUT_DTYPE = "bf16"
#: ops whose ``dtype`` attribute defaults to the current weight dtype (as in the builder)
_WEIGHT_DTYPE_OPS = ("embedding", "parameter")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


# ----------------------------------------------------------------------------- YAML loading


class _Map(dict):
    """A mapping read from YAML that remembers its line."""

    __slots__ = ("line",)


class _Seq(list):
    """A sequence read from YAML that remembers its line."""

    __slots__ = ("line",)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (``1e-6`` is a number), line-tagged containers and
    an error for duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                if k.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key '{k.value}' (first on line {seen[k.value] + 1})", k.start_mark)
                seen[k.value] = k.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _construct_map(loader, node):
    data = _Map()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))


def _construct_seq(loader, node):
    data = _Seq()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_sequence(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def parse_spec_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML ``text`` (a spec) and return the plain data. A syntax error raises
    SpecError naming ``source``, line and column."""
    try:
        return load_yaml(text, source, loader=_Loader, error=SpecError)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e)
        context = getattr(e, "context", None)
        msg = f"{context}: {problem}" if context else problem
        raise SpecError(f"{where}: YAML syntax error: {msg}") from None
    except RecursionError:
        raise SpecError(f"{source}: YAML nests too deeply") from None


def load_spec(source) -> Graph:
    """Lower a YAML graph spec into a Graph. ``source`` is a path to a YAML file or an
    already-parsed mapping. Returns the built (unannotated) Graph; ``graph.meta`` holds
    ``model`` (the spec's name) and ``workload`` (the declared inputs). Raises SpecError
    whose message starts with the YAML path of the problem."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)

        text = read_text_file(path, "spec", error=SpecError)  # a regular file under the size cap
        data = parse_spec_text(text, path)
        graph = _SpecBuilder(data).build()
        graph.meta["spec"] = path
        return graph
    return _SpecBuilder(source).build()


def load_spec_text(text: str, source: str = "<string>") -> Graph:
    """Lower the YAML spec in ``text`` into a Graph (see :func:`load_spec`)."""
    return _SpecBuilder(parse_spec_text(text, source)).build()


# ----------------------------------------------------------------------------- helpers


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short(v: Any, n: int = 60) -> str:

    return short(v, n)


def _tname(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return f"the string {_short(v)}"
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"the boolean {v}"
    return f"{type(v).__name__} {_short(v)}"


def _line(node: Any) -> str:
    line = getattr(node, "line", None)
    return f" (line {line})" if line else ""


def _hint(word: Any, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Env:
    """Value names visible at one level (stage or block). Lookups that resolve in an
    enclosing level are remembered in ``outer_reads`` (the values a block carries in)."""

    def __init__(self, parent: "_Env | None" = None):
        self.parent = parent
        self.vars: dict[str, Value] = {}
        self.outer_reads: dict[str, Value] = {}
        self.last: Value | None = parent.last if parent is not None else None

    def lookup(self, name: str) -> Value | None:
        if name in self.vars:
            return self.vars[name]
        if self.parent is None:
            return None
        v = self.parent.lookup(name)
        if v is not None:
            self.outer_reads.setdefault(name, v)
        return v

    def bind(self, name: str, v: Value) -> None:
        self.vars.pop(name, None)
        self.vars[name] = v

    def visible(self) -> list[str]:
        names = self.parent.visible() if self.parent is not None else []
        for n in self.vars:
            if n in names:
                names.remove(n)
            names.append(n)
        return names


class _SpecBuilder:
    """Walks a parsed spec and drives a GraphBuilder."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.b: GraphBuilder | None = None
        self.wdtype: list[str] = []
        self.workload: dict[str, str] = {}

    # -- errors
    def err(self, path: str, msg: str, node: Any = None):
        raise SpecError(f"{path or 'spec'}: {msg}{_line(node)}")

    def mapping(self, v: Any, path: str, keys, what: str, parent: Any = None) -> dict:
        if not isinstance(v, dict):
            self.err(path, f"{what} must be a mapping with keys {', '.join(keys)}; got {_tname(v)}", parent)
        for k in v:
            if not isinstance(k, str):
                self.err(path, f"keys must be strings, got {_tname(k)} (allowed keys: {', '.join(keys)})", v)
            if k not in keys:
                self.err(_key(path, k), f"unknown key{_hint(k, keys)} (allowed: {', '.join(keys)})", v)
        return v

    def seq(self, v: Any, path: str, what: str, parent: Any = None) -> list:
        if not isinstance(v, list):
            self.err(path, f"{what} must be a list; got {_tname(v)}", parent)
        return v

    def name(self, v: Any, path: str, what: str, parent: Any = None) -> str:
        if not isinstance(v, str):
            self.err(path, f"{what} must be a string; got {_tname(v)}", parent)
        if not _NAME_RE.match(v):
            self.err(path, f"{what} {v!r} must start with a letter or '_' and hold only letters, digits, "
                           f"'_', '.' and '-'", parent)
        return v

    def count(self, v: Any, path: str, what: str, parent: Any = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_COUNT:
            self.err(path, f"{what} must be a positive int (at most {MAX_COUNT}); got {_tname(v)}", parent)
        return v

    def dtype(self, v: Any, path: str, parent: Any = None) -> str:
        if not isinstance(v, str):
            self.err(path, f"dtype must be a string (one of {', '.join(DTYPES)}); got {_tname(v)}", parent)
        try:
            return get_dtype(v).name
        except WanirError as e:
            self.err(path, f"{e}{_hint(v, DTYPES)}", parent)

    # -- top level
    def build(self) -> Graph:
        spec = self.mapping(self.spec, "", TOP_KEYS, "a spec")
        if "name" not in spec:
            self.err("name", "missing: a spec needs a name (a string)", spec)
        name = self.name(spec["name"], "name", "the spec's name", spec)
        wd = self.dtype(spec["weight_dtype"], "weight_dtype", spec) if "weight_dtype" in spec else "bf16"
        self.wdtype = [wd]
        self.b = GraphBuilder(name, weight_dtype=wd, default_stage=name)
        top_inputs = self.inputs(spec.get("inputs"), "inputs", spec) if "inputs" in spec else {}
        if "stages" in spec:
            for k in ("ops", "blocks"):
                if k in spec:
                    self.err(k, f"not allowed next to 'stages': put the {k} inside a stage", spec)
            stages = self.seq(spec["stages"], "stages", "stages", spec)
            if not stages:
                self.err("stages", "must list at least one stage", spec)
            seen: set[str] = set()
            for i, st in enumerate(stages):
                self.stage(st, f"stages[{i}]", top_inputs, seen, stages)
        else:
            if "ops" not in spec and "blocks" not in spec:
                self.err("ops", "missing: a spec needs 'ops' or 'blocks' (or 'stages')", spec)
            self.stage_body(name, 1, spec, "", top_inputs, list(top_inputs))
        g = self.b.graph
        g.meta["model"] = name
        g.meta["workload"] = self.workload
        return g

    def inputs(self, v: Any, path: str, parent: Any) -> dict[str, tuple[tuple[int, ...], str]]:
        if not isinstance(v, dict):
            self.err(path, f"inputs must be a mapping name -> {{shape: [...], dtype: ...}}; got {_tname(v)}", parent)
        out = {}
        for k, spec in v.items():
            p = _key(path, str(k))
            self.name(k, p, "an input name", v)
            if isinstance(spec, list):
                spec = {"shape": spec}
            spec = self.mapping(spec, p, INPUT_KEYS, "an input", v)
            if "shape" not in spec:
                self.err(_key(p, "shape"), "missing: an input needs a shape (a list of positive ints)", spec)
            shape = spec["shape"]
            if not isinstance(shape, list) or not shape:
                self.err(_key(p, "shape"), f"must be a non-empty list of positive ints; got {_tname(shape)}", spec)
            for j, d in enumerate(shape):
                if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DIM:
                    self.err(f"{_key(p, 'shape')}[{j}]", f"dimensions must be positive ints (at most 2**40); got {_tname(d)}",
                             spec)
            if len(shape) > MAX_RANK:
                self.err(_key(p, "shape"), f"at most {MAX_RANK} dimensions; got {len(shape)}", spec)
            dt = self.dtype(spec["dtype"], _key(p, "dtype"), spec) if "dtype" in spec else DEFAULT_INPUT_DTYPE
            out[k] = (tuple(shape), dt)
        return out

    def stage(self, st: Any, path: str, top_inputs: dict, seen: set, parent: Any) -> None:
        st = self.mapping(st, path, STAGE_KEYS, "a stage", parent)
        if "name" not in st:
            self.err(_key(path, "name"), "missing: a stage needs a name", st)
        name = self.name(st["name"], _key(path, "name"), "a stage name", st)
        if name in seen:
            self.err(_key(path, "name"), f"stage '{name}' is defined twice", st)
        seen.add(name)
        inv = self.count(st["invocations"], _key(path, "invocations"), "invocations", st) \
            if "invocations" in st else 1
        own = self.inputs(st["inputs"], _key(path, "inputs"), st) if "inputs" in st else {}
        if "ops" not in st and "blocks" not in st:
            self.err(path, f"stage '{name}' needs 'ops' or 'blocks'", st)
        refs: set[str] = set()
        _collect_refs(st, refs, 0)
        inputs = {k: v for k, v in top_inputs.items() if k in refs and k not in own}
        inputs.update(own)
        self.stage_body(name, inv, st, path, inputs, list(inputs))

    def stage_body(self, name: str, invocations: int, body: dict, path: str, inputs: dict, order) -> None:
        env = _Env()
        with self.b.stage(name, invocations=invocations):
            for k in order:
                shape, dt = inputs[k]
                label = k if path == "" else f"{name}.{k}"
                self.workload[label] = f"{dt}[{','.join(map(str, shape))}]"
                v = self.b.input(k, shape, dt)
                env.bind(k, v)
                env.last = v
            with self.weights(body, path):
                self.body(body, path, env, 0)

    # -- bodies, blocks, ops
    @contextmanager
    def weights(self, m: dict, path: str):
        """Weights made inside are stored at ``m['weight_dtype']`` when the mapping names one."""
        if "weight_dtype" not in m:
            yield
            return
        dt = self.dtype(m["weight_dtype"], _key(path, "weight_dtype"), m)
        self.wdtype.append(dt)
        try:
            with self.b.weights(dt):
                yield
        finally:
            self.wdtype.pop()

    def body(self, m: dict, path: str, env: _Env, depth: int) -> None:
        if "ops" in m:
            ops = self.seq(m["ops"], _key(path, "ops"), "ops", m)
            for i, item in enumerate(ops):
                self.op(item, f"{_key(path, 'ops')}[{i}]", env, ops)
        if "blocks" in m:
            blocks = self.seq(m["blocks"], _key(path, "blocks"), "blocks", m)
            seen: set[str] = set()
            for i, item in enumerate(blocks):
                self.block(item, f"{_key(path, 'blocks')}[{i}]", env, depth + 1, seen, blocks)

    def block(self, m: Any, path: str, env: _Env, depth: int, seen: set, parent: Any) -> None:
        m = self.mapping(m, path, BLOCK_KEYS, "a block", parent)
        if depth > MAX_DEPTH:
            self.err(path, f"blocks nest deeper than {MAX_DEPTH} levels", m)
        if "name" not in m:
            self.err(_key(path, "name"), "missing: a block needs a name", m)
        name = self.name(m["name"], _key(path, "name"), "a block name", m)
        if name in seen:
            self.err(_key(path, "name"), f"block '{name}' is defined twice at this level", m)
        seen.add(name)
        if "repeat" in m and "loop" in m:
            self.err(_key(path, "loop"), "a block has either 'repeat' (distinct weights) or 'loop' "
                                         "(shared weights), not both", m)
        if "ops" not in m and "blocks" not in m:
            self.err(path, f"block '{name}' needs 'ops' or 'blocks'", m)
        out_name = self.name(m["output"], _key(path, "output"), "output", m) if "output" in m else None
        if "loop" in m:
            n = self.count(m["loop"], _key(path, "loop"), "loop", m)
            ctx = self.b.loop(name, n)
        elif "repeat" in m:
            n = self.count(m["repeat"], _key(path, "repeat"), "repeat", m)
            ctx = self.b.repeat(name, n)
        else:
            n = 1
            ctx = self.b.scope(name)
        inner = _Env(env)
        try:
            with ctx, self.weights(m, path):
                self.body(m, path, inner, depth)
        except SpecError:
            raise
        except WanirError as e:  # e.g. a scope reopened by a block of an enclosing level
            self.err(path, str(e), m)
        if out_name is None:
            env.last = None
            return
        out = inner.vars.get(out_name)
        if out is None:
            defined = ", ".join(inner.vars) or "none"
            self.err(_key(path, "output"), f"value '{out_name}' is not defined inside block '{name}' "
                                           f"(defined there: {defined})", m)
        carried = inner.outer_reads.get(out_name)
        if n > 1 and carried is not None and carried.type != out.type:
            self.err(_key(path, "output"), f"block '{name}' runs ×{n} and carries '{out_name}', so its output "
                                           f"must keep the type it enters with: {carried.type} in, {out.type} out", m)
        env.bind(out_name, out)
        env.last = out

    def op(self, m: Any, path: str, env: _Env, parent: Any) -> None:
        m = self.mapping(m, path, OP_KEYS, "an op", parent)
        if "op" not in m:
            self.err(_key(path, "op"), "missing: an op needs 'op' (its kind; `wanir ops` lists them)", m)
        kind = m["op"]
        if not isinstance(kind, str):
            self.err(_key(path, "op"), f"must be an op kind (a string); got {_tname(kind)}", m)
        try:
            opdef = get_op(kind, _key(path, "op"))
        except WanirError as e:
            raise SpecError(f"{e}{_line(m)}") from None
        if kind == "input":
            self.err(_key(path, "op"), "declare graph inputs under 'inputs', not as ops", m)
        # inputs
        if "inputs" in m and "input" in m:
            self.err(_key(path, "input"), "give either 'input' (one name) or 'inputs' (a list), not both", m)
        if "input" in m:
            names = [m["input"]]
            ipaths = [_key(path, "input")]
        elif "inputs" in m:
            names = self.seq(m["inputs"], _key(path, "inputs"), "inputs", m)
            ipaths = [f"{_key(path, 'inputs')}[{j}]" for j in range(len(names))]
        else:
            names = None
        if names is None:
            lo = opdef.n_inputs[0]
            if lo == 0:
                ins = []
            elif env.last is None:
                self.err(_key(path, "inputs"), f"missing: op '{kind}' needs {lo} input(s) and there is no "
                                               f"previous single value to take", m)
            else:
                ins = [env.last]
        else:
            ins = []
            for nm, ip in zip(names, ipaths):
                if not isinstance(nm, str):
                    self.err(ip, f"must be a value name (a string); got {_tname(nm)}", m)
                v = env.lookup(nm)
                if v is None:
                    vis = env.visible()
                    shown = ", ".join(vis[-30:]) if vis else "none"
                    if len(vis) > 30:
                        shown = "..., " + shown
                    self.err(ip, f"undefined value '{nm}' (defined so far: {shown})", m)
                ins.append(v)
        # name(s)
        vname = m.get("name")
        if vname is None and "name" in m:
            self.err(_key(path, "name"), "must be a value name (a string) or a list of them; got nothing", m)
        if isinstance(vname, list):
            for j, nm in enumerate(vname):
                self.name(nm, f"{_key(path, 'name')}[{j}]", "a value name", m)
            node_name = kind
        elif vname is not None:
            node_name = self.name(vname, _key(path, "name"), "a value name", m)
        else:
            node_name = kind
        # attrs
        attrs = m.get("attrs", {})
        if attrs is None:
            attrs = {}
        apath = _key(path, "attrs")
        if not isinstance(attrs, dict):
            self.err(apath, f"must be a mapping attribute -> value; got {_tname(attrs)}", m)
        allowed = ", ".join(a.name for a in opdef.attrs) or "none"
        for k in attrs:
            if not isinstance(k, str):
                self.err(apath, f"attribute names must be strings; got {_tname(k)}", m)
            if k not in opdef.attr_map:
                self.err(_key(apath, k), f"op '{kind}' has no attribute '{k}'{_hint(k, opdef.attr_map)} "
                                         f"(allowed: {allowed})", m)
        attrs = dict(attrs)
        if kind in _WEIGHT_DTYPE_OPS and attrs.get("dtype") is None:
            attrs["dtype"] = self.wdtype[-1]
        for a in opdef.attrs:
            if a.required and attrs.get(a.name) is None:
                self.err(_key(apath, a.name), f"missing: op '{kind}' needs attribute '{a.name}' ({a.type})", m)
        try:
            opdef.normalize_attrs(attrs, apath)
        except WanirError as e:
            msg = str(e)
            hit = re.search(r"attribute '([^']+)'", msg)
            if hit and msg.startswith(apath + ": "):
                msg = f"{_key(apath, hit.group(1))}: {msg[len(apath) + 2:]}"
            raise SpecError(f"{msg}{_line(m)}") from None
        # build
        try:
            with self.weights(m, path):
                out = self.b.op(kind, *ins, name=node_name, **attrs)
        except SpecError:
            raise
        except WanirError as e:
            self.err(path, str(e), m)
        except (ValueError, TypeError, ArithmeticError, IndexError, OverflowError, MemoryError) as e:
            self.err(path, f"op '{kind}' cannot be built: {type(e).__name__}: {e}", m)
        outs = out if isinstance(out, tuple) else (out,)
        if isinstance(vname, list):
            if len(vname) != len(outs):
                self.err(_key(path, "name"), f"op '{kind}' gives {len(outs)} output(s), {len(vname)} name(s) given", m)
            for nm, v in zip(vname, outs):
                env.bind(nm, v)
        elif vname is not None:
            if len(outs) == 1:
                env.bind(vname, outs[0])
            else:
                for j, v in enumerate(outs):
                    env.bind(f"{vname}.{j}", v)
        env.last = outs[0] if len(outs) == 1 else None


def _collect_refs(m: Any, out: set, depth: int) -> None:
    """Names an op tree refers to through 'input'/'inputs' (tolerates malformed trees)."""
    if depth > MAX_DEPTH + 2 or not isinstance(m, dict):
        return
    for key in ("ops", "blocks"):
        items = m.get(key)
        if not isinstance(items, list):
            continue
        for it in items:
            if not isinstance(it, dict):
                continue
            if key == "ops":
                if isinstance(it.get("input"), str):
                    out.add(it["input"])
                if isinstance(it.get("inputs"), list):
                    out.update(x for x in it["inputs"] if isinstance(x, str))
            else:
                _collect_refs(it, out, depth + 1)


__all__ = ["load_spec", "load_spec_text", "parse_spec_text", "TOP_KEYS", "STAGE_KEYS", "BLOCK_KEYS", "OP_KEYS"]
