"""Guard for speed work (not a test): dump ``wanir.estimate(ov).to_dict()`` for diverse configurations.

    .venv/bin/python benchmarks/check_identical.py dump  OUT.json   # before a change
    .venv/bin/python benchmarks/check_identical.py check OUT.json   # after: exit 1 on any difference

A speed change must leave every number the same: the JSON of ~16 configurations that
exercise the model zoo, parallel plans, runtimes, offload, caching, distillation, fp8,
other GPUs and fusion is compared byte for byte. A guard kept next to the benchmarks, not
a test: the reference file is wanir's own output, taken from the code before the change.
"""
from __future__ import annotations

import json
import sys

CONFIGS = [
    [],
    ["model=wan2.1-t2v-1.3b", "workload=480p"],
    ["model=wan2.2-t2v-a14b"],
    ["model=wan2.1-i2v-14b-720p"],
    ["model=wan2.2-ti2v-5b"],
    ["parallel=fsdp+ulysses", "parallel.degree=8"],
    ["parallel=cfg+usp", "parallel.degree=8", "hardware=h20"],
    ["runtime=diffusers"],
    ["memory.offload_model=block", "memory.resident_params=5000000000"],
    ["cache.method=teacache", "cache.skip=0.4"],
    ["distill=4step"],
    ["precision.dit_compute=fp8", "hardware=h100-sxm"],
    ["hardware=rtx-4090", "model=wan2.1-t2v-1.3b", "workload=480p", "parallel=ulysses", "parallel.degree=4"],
    ["hardware=mi300x"],
    ["roofline.fusion=compiled"],
    ["workload.height=496"],
]


def dump() -> str:
    """Return the estimates of CONFIGS as one JSON text (keys sorted)."""
    import wanir
    out = {}
    for ov in CONFIGS:
        try:
            out[" ".join(ov) or "(default)"] = wanir.estimate(ov).to_dict()
        except Exception as e:  # noqa: BLE001 - an error is part of what must not change
            out[" ".join(ov) or "(default)"] = {"error": f"{type(e).__name__}: {e}"}
    return json.dumps(out, sort_keys=True, indent=1, default=str)


def main(argv: list[str]) -> int:
    """Dump or check; returns the process exit status (0 identical, 1 different)."""
    if len(argv) != 2 or argv[0] not in ("dump", "check"):
        print(__doc__)
        return 2
    text = dump()
    if argv[0] == "dump":
        with open(argv[1], "w") as f:
            f.write(text)
        return 0
    with open(argv[1]) as f:
        ref = f.read()
    if ref == text:
        print("identical")
        return 0
    a, b = json.loads(ref), json.loads(text)
    for k in a:
        if a[k] != b.get(k):
            print("differs:", k)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
