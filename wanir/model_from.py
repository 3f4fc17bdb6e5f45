"""``model.from``: a resolved configuration with the components a checkpoint describes.

Part of the resolver (wanir/resolve.py): the frontends read the files
(:func:`wanir.frontends.checkpoint.inspect`: each component's inferred hyperparameters and
storage dtype); this module merges what they found into the composed tree — the DiT, text
encoder, image encoder and VAE groups, the weights' precision where the runtime's default
stood, the model's name — and says what it did. docs/from-files.md.
"""
from __future__ import annotations

from pathlib import Path

from .config import DTYPE_CHOICES, to_dict
from .errors import ConfigError
from .frontends.checkpoint import inspect
from .options import select
from .runtime import _plan_sizes, runtime_options
from .scenario import freeze

#: the precision key of each component's weights
PRECISION_KEYS = {"dit": "dit_weights", "text_encoder": "text_encoder", "image_encoder": "image_encoder",
                  "vae": "vae"}


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def _plain_cfg(c: dict) -> dict:
    return {k: _plain(v) for k, v in c.items()}


def apply_model_from(cfg):
    """If ``model.from`` of ``cfg`` (a composed configuration: a read-only tree, a mapping or
    a DictConfig) is set, infer the component(s) at that path and replace the ``dit`` /
    ``text_encoder`` / ``image_encoder`` / ``vae`` groups with them (keys the inference does
    not produce are kept), and set ``model.name`` to ``from:<file name>``. Returns ``(tree,
    lines)``: the new read-only tree (``cfg`` itself when ``model.from`` is null) and the lines
    describing what was inferred and assumed. Raises ConfigError for an unreadable file, a
    shape that fits no known family, or a DiT that does not match ``model.task``."""
    src = select(cfg, "model.from")
    if src is None or src == "":
        return cfg, []
    ins = inspect(str(src))
    tree = to_dict(cfg)                     # a plain, mutable copy
    model = tree.setdefault("model", {})
    task = model.get("task")
    lines = []
    dits = [c for c in ins.components if c.component == "dit"]
    if len(dits) > 1 and any(_plain_cfg(c.config) != _plain_cfg(dits[0].config) for c in dits[1:]):
        diff = [k for k in dits[0].config if _plain(dits[0].config[k]) != _plain(dits[1].config[k])]
        raise ConfigError(f"model.from={src}: the experts differ in {', '.join(diff)}; wanir models two experts "
                          f"of one architecture")
    for comp in ins.components:
        if comp.component == "dit" and task is not None:
            # Wan2.1 image-to-video: a CLIP image encoder and the DiT's image embedder; Wan2.2
            # I2V-A14B: no image encoder, the condition enters through the input channels
            i2v = comp.config["image_dim"] is not None
            if i2v and (task != "i2v" or tree.get("image_encoder") is None):
                raise ConfigError(f"model.from={src}: an image-to-video DiT (image_dim={comp.config['image_dim']}) "
                                  f"but model.task={task}; select an I2V model too, e.g. "
                                  f"model=wan2.1-i2v-14b-480p model.from={src}")
            if not i2v and task == "i2v" and tree.get("image_encoder") is not None:
                raise ConfigError(f"model.from={src}: a text-to-video DiT (no image embedder) but model.task=i2v; "
                                  f"select a T2V model too, e.g. model=wan2.1-t2v-14b model.from={src}")
        lines += comp.lines()
        if comp.component == "image_encoder" and task != "i2v":
            lines.append(f"  note: model.task={task} runs no image encoder; {comp.source} not used")
            continue
        base = dict(tree[comp.component]) if tree.get(comp.component) is not None else {}
        base.update(to_dict(comp.config))
        tree[comp.component] = base
        lines += _storage_precision(tree, comp)
    model["name"] = f"from:{Path(str(src)).name}"
    return freeze(tree), lines + consistency_notes(tree)


def _storage_precision(tree: dict, comp) -> list:
    """Set ``precision.<key>`` of ``comp``'s weights to the dtype its files store, unless the
    configured value differs from the runtime's default for that key (``runtime/*.yaml``): a
    value the user chose (an override or a precision option) is kept. Under a plan that shards
    the DiT (FSDP) the runtime's sharded-weight dtypes stay. Returns the lines saying what
    was set or kept."""
    key, dt = PRECISION_KEYS.get(comp.component), comp.storage_dtype
    prec = tree.get("precision")
    if key is None or dt is None or prec is None or key not in prec:
        return []
    now = prec[key]
    if dt not in DTYPE_CHOICES:
        return [f"  note: stored as {dt}, which wanir does not model; precision.{key}={now} kept"]
    if now == dt:
        return []
    fsdp = _plan_sizes(tree)[1] > 1
    if fsdp and key == "dit_weights":
        return [f"  note: stored as {dt}; precision.{key}={now} as the runtime shards it"]
    if now != runtime_options(tree).precision_default(key, fsdp):
        return [f"  note: stored as {dt}; precision.{key}={now} as configured"]
    prec[key] = dt
    return [f"  precision.{key}={dt} (the files' storage dtype; override with precision.{key}=...)"]


def consistency_notes(tree) -> list:
    """Lines naming where the (partly inferred) components of a composed ``tree`` (a
    mapping) disagree with one another."""
    out = []
    dit, te, vae = tree.get("dit"), tree.get("text_encoder"), tree.get("vae")
    if dit is not None and te is not None and te.get("d_model") is not None and dit.get("text_dim") != te.get("d_model"):
        out.append(f"note: dit.text_dim={dit.get('text_dim')} but text_encoder.d_model={te.get('d_model')}; "
                   f"the DiT's text embedder expects another text encoder width")
    if dit is not None and vae is not None and vae.get("z_dim") is not None:
        z = int(vae.get("z_dim"))
        want = 2 * z + 4 if dit.get("image_dim") is not None or (tree.get("model") or {}).get("task") == "i2v" else z
        if dit.get("in_channels") != want:
            out.append(f"note: dit.in_channels={dit.get('in_channels')} but the VAE (z_dim={z}) gives {want} "
                       f"input channels")
    return out
