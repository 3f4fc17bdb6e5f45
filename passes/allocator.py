"""allocator: GPU memory as PyTorch's CUDA caching allocator holds it.

The liveness walk (passes/memory.py) says which tensors are live when; this module says how
much memory the process holds for them. It replays the walk's allocations and frees through
a model of PyTorch's caching allocator (``c10/cuda/CUDACachingAllocator.cpp``) and returns
the peak of what tensors occupy (``torch.cuda.max_memory_allocated``) and of what the
allocator reserves from the driver (``torch.cuda.max_memory_reserved``). The CUDA context is
outside both (``memory.reserve_gib``, docs/runtimes.md).

PyTorch's documented rules, each with its source — the constants of
``c10/core/AllocatorConfig.h`` (``kLargeBuffer`` of ``CUDACachingAllocator.cpp``), the
"CUDA memory management" notes of the PyTorch documentation and docs/runtimes.md §4 of the
reference:

- every request is rounded up to a multiple of ``kMinBlockSize`` = 512 bytes (``round_size``);
- a rounded request of at most ``kSmallSize`` = 1 MiB is *small* and lives in the small pool,
  whose segments are ``kSmallBuffer`` = 2 MiB; larger requests live in the large pool
  (``get_allocation_size``): a request below ``kMinLargeAlloc`` = 10 MiB gets a
  ``kLargeBuffer`` = 20 MiB segment, a larger one a segment of its own size rounded up to
  ``kRoundLarge`` = 2 MiB;
- a request is served from the smallest cached free block of its pool that is large enough
  (best fit, ``get_free_block``); only when none is, a new segment is cudaMalloc'd;
- a block larger than the request is split (``should_split``) when the remainder is at least
  512 bytes (small pool) or more than 1 MiB (large pool); otherwise the whole block is handed
  out and counted as allocated;
- a freed block stays cached (reserved) and merges with free neighbours of the same segment;
  segments never merge; ``torch.cuda.empty_cache()`` returns every wholly free segment;
- ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` (``memory.expandable_segments``): one
  segment per pool that grows by mapping pages (2 MiB in the small pool, 20 MiB in the large
  one) at its end, so freed space is contiguous and reusable; ``empty_cache`` unmaps the pages
  that lie wholly inside free blocks.

Not modelled: ``max_split_size_mb``, ``roundup_power2_divisions``, ``garbage_collection_threshold``
(all off by default), more than one CUDA stream, and the allocator's retry that frees cached
segments when cudaMalloc fails (so a reserved peak above the capacity is reported as not
fitting, although PyTorch may still get by with more cudaMalloc calls).

Which ``empty_cache()`` calls a runtime makes is :data:`EMPTY_CACHE_RULES` (read from the
official code, docs/runtimes.md §4).
"""
from __future__ import annotations

import threading
from bisect import bisect_left, insort
from collections import OrderedDict

MiB = 1 << 20

#: PyTorch's documented rules as constants: (name, bytes, source)
RULES = (
    ("kMinBlockSize", 512, "c10/core/AllocatorConfig.h: all sizes are rounded to at least 512 bytes"),
    ("kSmallSize", 1 * MiB, "c10/core/AllocatorConfig.h: largest 'small' allocation is 1 MiB"),
    ("kSmallBuffer", 2 * MiB, "c10/core/AllocatorConfig.h: 'small' allocations are packed in 2 MiB blocks"),
    ("kMinLargeAlloc", 10 * MiB, "c10/core/AllocatorConfig.h: allocations between 1 and 10 MiB may use kLargeBuffer"),
    ("kLargeBuffer", 20 * MiB, "c10/cuda/CUDACachingAllocator.cpp: 'large' allocations may be packed in 20 MiB blocks"),
    ("kRoundLarge", 2 * MiB, "c10/core/AllocatorConfig.h: round up large allocations to 2 MiB"),
)
_R = {name: value for name, value, _ in RULES}
MIN_BLOCK = _R["kMinBlockSize"]
SMALL_SIZE = _R["kSmallSize"]
SMALL_BUFFER = _R["kSmallBuffer"]
MIN_LARGE_ALLOC = _R["kMinLargeAlloc"]
LARGE_BUFFER = _R["kLargeBuffer"]
ROUND_LARGE = _R["kRoundLarge"]

#: expandable segments: page sizes mapped per pool (small, large)
EXPANDABLE_PAGE = {True: SMALL_BUFFER, False: LARGE_BUFFER}

#: a runtime's ``empty_cache()`` calls (``runtime.empty_cache``), each read from its code:
#: "official" — Wan2.1/Wan2.2 ``wan/text2video.py`` and ``wan/image2video.py``: only under
#: ``offload_model``; after the DiT loop (before the VAE decode) in every task, and in
#: image-to-video also before the loop and after every DiT call; "never" — diffusers'
#: pipelines and offload hooks call none.
EMPTY_CACHE_RULES = {
    "official": {"after_dit_loop": "offload", "before_dit_loop": "offload-i2v", "after_each_dit_call": "offload-i2v"},
    "never": {},
}

#: DiT calls (denoising loop invocations) replayed through the allocator: the second call
#: meets the first one's cached blocks, after which the pattern repeats
LOOP_REPLAYS = 2


class Program(tuple):
    """An allocator program (or one invocation's events): a tuple of ("alloc", key, bytes),
    ("free", key) and ("empty_cache",) operations, keys tuples of scalars. Immutable as it
    is, so freezing a record that holds one keeps it whole instead of copying thousands of
    operations (wanir/scenario.py ``freeze`` passes tuple subclasses through)."""

    __slots__ = ()


def round_size(nbytes: int) -> int:
    """The block size PyTorch hands out for a request of ``nbytes`` (bytes, int): rounded up
    to a multiple of kMinBlockSize (512), at least 512."""
    n = int(nbytes)
    if n < MIN_BLOCK:
        return MIN_BLOCK
    return MIN_BLOCK * ((n + MIN_BLOCK - 1) // MIN_BLOCK)


def is_small(nbytes: int) -> bool:
    """Whether a request of ``nbytes`` goes to the small pool (rounded size ≤ kSmallSize)."""
    return round_size(nbytes) <= SMALL_SIZE


def segment_size(nbytes: int) -> int:
    """Bytes of the new segment cudaMalloc'd when a request of ``nbytes`` finds no cached
    block (``get_allocation_size``): 2 MiB for a small request, 20 MiB below 10 MiB, else
    the rounded request rounded up to a multiple of 2 MiB."""
    n = round_size(nbytes)
    if n <= SMALL_SIZE:
        return SMALL_BUFFER
    if n < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * ((n + ROUND_LARGE - 1) // ROUND_LARGE)


def _should_split(small: bool, remaining: int) -> bool:
    return remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE


class CachingAllocator:
    """A replay model of PyTorch's CUDA caching allocator on one stream (module docstring).
    ``malloc(key, nbytes)`` / ``free(key)`` / ``empty_cache()``; ``allocated`` and
    ``reserved`` are the current bytes, ``peak_allocated`` / ``peak_reserved`` their maxima
    (ints)."""

    _VIRTUAL = 1 << 50      # address space of an expandable segment

    def __init__(self, expandable: bool = False):
        self.expandable = bool(expandable)
        self._free = {True: [], False: []}     # pool (small?) -> sorted [(size, addr)]
        self._blocks: dict[int, list] = {}     # addr -> [size, segment, allocated]
        self._ends: dict[int, int] = {}        # end address -> addr
        self._segments: dict[int, tuple] = {}  # segment -> (addr, size, small)
        self._live: dict = {}
        self._next = 0
        self._seg_id = 0
        self._mapped = {True: set(), False: set()}
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0
        if self.expandable:
            for small in (True, False):
                self._new_segment(self._VIRTUAL, small, count=False)

    def copy(self) -> "CachingAllocator":
        """An independent allocator in the same state (free lists, blocks, segments, live
        tensors, counters and peaks): replaying the same operations on both gives the same
        results. Block records are never changed in place (each change puts a new one), so
        the dictionaries are copied shallowly."""
        c = CachingAllocator.__new__(CachingAllocator)
        c.expandable = self.expandable
        c._free = {True: list(self._free[True]), False: list(self._free[False])}
        c._blocks = dict(self._blocks)
        c._ends = dict(self._ends)
        c._segments = dict(self._segments)
        c._live = dict(self._live)
        c._next, c._seg_id = self._next, self._seg_id
        c._mapped = {True: set(self._mapped[True]), False: set(self._mapped[False])}
        c.allocated, c.reserved = self.allocated, self.reserved
        c.peak_allocated, c.peak_reserved = self.peak_allocated, self.peak_reserved
        return c

    def holds_only(self, keys) -> bool:
        """Whether the live tensors are exactly those under ``keys`` (an iterable of
        distinct keys)."""
        n = 0
        live = self._live
        for k in keys:
            if k not in live:
                return False
            n += 1
        return n == len(live)

    def release_all(self) -> None:
        """Free every live tensor, then ``empty_cache()``, at once: with nothing allocated
        every segment is one free block (frees merge neighbours), so ``empty_cache`` returns
        them all; the peaks, the next address and segment number stay. Under expandable
        segments (whose two segments stay, unmapped) it frees and empties one by one."""
        if self.expandable:
            for k in list(self._live):
                self.free(k)
            self.empty_cache()
            return
        self._free = {True: [], False: []}
        self._blocks, self._ends, self._segments, self._live = {}, {}, {}, {}
        self.allocated = self.reserved = 0

    # blocks ---------------------------------------------------------------
    def _new_segment(self, size: int, small: bool, count: bool = True) -> int:
        addr = self._next
        self._next += size + (1 << 40)          # a gap: segments are never adjacent
        seg = self._seg_id = self._seg_id + 1
        self._segments[seg] = (addr, size, small)
        self._put(addr, size, seg, False)
        if count:
            self.reserved += size
        return addr

    def _put(self, addr, size, seg, allocated):
        self._blocks[addr] = [size, seg, allocated]
        self._ends[addr + size] = addr
        if not allocated:
            insort(self._free[self._segments[seg][2]], (size, addr))

    def _take(self, addr):
        size, seg, allocated = self._blocks.pop(addr)
        del self._ends[addr + size]
        if not allocated:
            lst = self._free[self._segments[seg][2]]
            del lst[bisect_left(lst, (size, addr))]
        return size, seg

    def _map(self, small, addr, size):
        page = EXPANDABLE_PAGE[small]
        m = self._mapped[small]
        before = len(m)
        m.update(range(addr // page, (addr + size + page - 1) // page))
        self.reserved += (len(m) - before) * page

    # API ------------------------------------------------------------------
    def malloc(self, key, nbytes: int) -> int:
        """Allocate a tensor of ``nbytes`` under ``key``; returns the block size handed out."""
        # The block bookkeeping of _take/_put is written out here: this runs thousands of
        # times per replay (the same steps, without the calls).
        if key in self._live:
            raise ValueError(f"allocator replay: {key!r} allocated twice")
        n = int(nbytes)
        n = MIN_BLOCK if n < MIN_BLOCK else MIN_BLOCK * ((n + MIN_BLOCK - 1) // MIN_BLOCK)
        small = n <= SMALL_SIZE
        lst = self._free[small]
        blocks, ends = self._blocks, self._ends
        i = bisect_left(lst, (n, -1))
        if i < len(lst):
            size, addr = lst.pop(i)
            seg = blocks.pop(addr)[1]
            del ends[addr + size]
        else:                   # a new segment, taken whole at once
            size = segment_size(n)
            addr = self._next
            self._next += size + (1 << 40)
            seg = self._seg_id = self._seg_id + 1
            self._segments[seg] = (addr, size, small)
            self.reserved += size
        rem = size - n
        if _should_split(small, rem):
            blocks[addr + n] = [rem, seg, False]
            ends[addr + size] = addr + n
            insort(lst, (rem, addr + n))
            size = n
        blocks[addr] = [size, seg, True]
        ends[addr + size] = addr
        if self.expandable:
            self._map(small, addr, size)
        self._live[key] = addr
        self.allocated += size
        if self.allocated > self.peak_allocated:
            self.peak_allocated = self.allocated
        if self.reserved > self.peak_reserved:
            self.peak_reserved = self.reserved
        return size

    def free(self, key) -> None:
        """Free the tensor allocated under ``key``: its block stays cached, merged with free
        neighbours of its segment."""
        addr = self._live.pop(key)
        blocks, ends = self._blocks, self._ends
        size, seg, _ = blocks.pop(addr)         # allocated: not on a free list
        del ends[addr + size]
        self.allocated -= size
        lst = self._free[self._segments[seg][2]]
        nxt = blocks.get(addr + size)
        if nxt is not None and not nxt[2] and nxt[1] == seg:
            s2 = nxt[0]
            del blocks[addr + size]
            del ends[addr + size + s2]
            del lst[bisect_left(lst, (s2, addr + size))]
            size += s2
        prev = ends.get(addr)
        if prev is not None:
            pb = blocks[prev]
            if not pb[2] and pb[1] == seg:
                s0 = pb[0]
                del blocks[prev]
                del ends[addr]
                del lst[bisect_left(lst, (s0, prev))]
                addr, size = prev, size + s0
        blocks[addr] = [size, seg, False]
        ends[addr + size] = addr
        insort(lst, (size, addr))

    def run_events(self, stage: str, run: int, events) -> None:
        """Replay one run of a stage's events — ("alloc", key, bytes) and ("free", key) —
        under keys (stage, run, key): ``malloc`` and ``free`` written out in one loop (the
        same steps; this is the replay's inner loop)."""
        if self.expandable:         # page mapping: the plain calls
            for op in events:
                if op[0] == "alloc":
                    self.malloc((stage, run, op[1]), op[2])
                elif op[0] == "free":
                    self.free((stage, run, op[1]))
                else:
                    raise ValueError(f"allocator replay: unknown operation {op[0]!r}")
            return
        live, blocks, ends, segments = self._live, self._blocks, self._ends, self._segments
        free_lists = self._free
        allocated, reserved = self.allocated, self.reserved
        peak_a, peak_r = self.peak_allocated, self.peak_reserved
        try:
            for op in events:
                kind = op[0]
                key = (stage, run, op[1])
                if kind == "alloc":
                    if key in live:
                        raise ValueError(f"allocator replay: {key!r} allocated twice")
                    n = int(op[2])
                    n = MIN_BLOCK if n < MIN_BLOCK else MIN_BLOCK * ((n + MIN_BLOCK - 1) // MIN_BLOCK)
                    small = n <= SMALL_SIZE
                    lst = free_lists[small]
                    i = bisect_left(lst, (n, -1))
                    if i < len(lst):
                        size, addr = lst.pop(i)
                        seg = blocks.pop(addr)[1]
                        del ends[addr + size]
                    else:
                        size = segment_size(n)
                        addr = self._next
                        self._next += size + (1 << 40)
                        seg = self._seg_id = self._seg_id + 1
                        segments[seg] = (addr, size, small)
                        reserved += size
                    rem = size - n
                    if (rem >= MIN_BLOCK) if small else (rem > SMALL_SIZE):     # _should_split
                        blocks[addr + n] = [rem, seg, False]
                        ends[addr + size] = addr + n
                        insort(lst, (rem, addr + n))
                        size = n
                    blocks[addr] = [size, seg, True]
                    ends[addr + size] = addr
                    live[key] = addr
                    allocated += size
                    if allocated > peak_a:
                        peak_a = allocated
                    if reserved > peak_r:
                        peak_r = reserved
                elif kind == "free":
                    addr = live.pop(key)
                    size, seg, _ = blocks.pop(addr)
                    del ends[addr + size]
                    allocated -= size
                    lst = free_lists[segments[seg][2]]
                    nxt = blocks.get(addr + size)
                    if nxt is not None and not nxt[2] and nxt[1] == seg:
                        s2 = nxt[0]
                        del blocks[addr + size]
                        del ends[addr + size + s2]
                        del lst[bisect_left(lst, (s2, addr + size))]
                        size += s2
                    prev = ends.get(addr)
                    if prev is not None:
                        pb = blocks[prev]
                        if not pb[2] and pb[1] == seg:
                            s0 = pb[0]
                            del blocks[prev]
                            del ends[addr]
                            del lst[bisect_left(lst, (s0, prev))]
                            addr, size = prev, size + s0
                    blocks[addr] = [size, seg, False]
                    ends[addr + size] = addr
                    insort(lst, (size, addr))
                else:
                    raise ValueError(f"allocator replay: unknown operation {kind!r}")
        finally:
            self.allocated, self.reserved = allocated, reserved
            self.peak_allocated, self.peak_reserved = peak_a, peak_r

    def empty_cache(self) -> None:
        """``torch.cuda.empty_cache()``: return wholly free segments (unmap wholly free pages
        under expandable segments)."""
        if self.expandable:
            for small in (True, False):
                page = EXPANDABLE_PAGE[small]
                m = self._mapped[small]
                for size, addr in self._free[small]:
                    lo, hi = -(-addr // page), (addr + size) // page
                    if hi <= lo:
                        continue
                    before = len(m)
                    if hi - lo <= len(m):
                        m.difference_update(range(lo, hi))
                    else:           # the unmapped tail of the segment: look at the mapped pages only
                        m.difference_update([p for p in m if lo <= p < hi])
                    self.reserved -= (before - len(m)) * page
            return
        for seg, (addr, size, small) in list(self._segments.items()):
            b = self._blocks.get(addr)
            if b is not None and b[0] == size and not b[2]:
                self._take(addr)
                del self._segments[seg]
                self.reserved -= size


def _run(a: CachingAllocator, program) -> CachingAllocator:
    """Replay ``program`` on allocator ``a`` (changed in place); returns ``a``."""
    malloc, free = a.malloc, a.free
    for op in program:
        kind = op[0]
        if kind == "alloc":
            malloc(op[1], op[2])
        elif kind == "free":
            free(op[1])
        elif kind == "empty_cache":
            a.empty_cache()
        else:
            raise ValueError(f"allocator replay: unknown operation {kind!r}")
    return a


def _peaks(a: CachingAllocator) -> dict:
    return {"peak_allocated_bytes": a.peak_allocated, "peak_reserved_bytes": a.peak_reserved}


def replay(program, expandable: bool = False) -> dict:
    """Replay ``program`` — an iterable of ("alloc", key, bytes), ("free", key) and
    ("empty_cache",) — through a :class:`CachingAllocator`. Returns {"peak_allocated_bytes",
    "peak_reserved_bytes"} (ints)."""
    return _peaks(_run(CachingAllocator(expandable), program))


def empty_cache_points(rule: str, offload_model: bool, image_to_video: bool) -> set:
    """The points of a generation at which the runtime's ``empty_cache`` rule
    (:data:`EMPTY_CACHE_RULES`) empties the cache: a subset of {"before_dit_loop",
    "after_each_dit_call", "after_dit_loop"}."""
    if rule not in EMPTY_CACHE_RULES:
        raise ValueError(f"runtime.empty_cache must be one of {', '.join(EMPTY_CACHE_RULES)}, got {rule!r}")
    out = set()
    for point, when in EMPTY_CACHE_RULES[rule].items():
        if (when == "offload" and offload_model) or (when == "offload-i2v" and offload_model and image_to_video):
            out.add(point)
    return out


def _weight_allocs(s: str, w: tuple):
    return (("alloc", ("w", s, i), b) for i, b in enumerate(w))


def _weight_frees(s: str, n: int):
    return (("free", ("w", s, i)) for i in range(n))


def _run_events(s: str, k: int, events):
    """Run ``k`` of stage ``s``'s events, their keys made distinct from other runs'."""
    return ((op[0], (s, k, op[1]), *op[2:]) for op in events)


def _segments(stages: dict, order, offload_model: bool, points, loop_stage: str):
    """The program of :func:`pipeline_program` in segments: (key, operations) pairs whose
    key determines the operations exactly (the stage, its weights' sizes, its events)."""
    gpu = [s for s in order if s in stages and stages[s].get("on_gpu", True)]

    def weights(s):
        w = tuple(stages[s]["weights"])
        return ("weights", s, w), _weight_allocs(s, w)

    if not offload_model:
        for s in gpu:
            yield weights(s)
    for s in gpu:
        rec = stages[s]
        loop = s == loop_stage
        if offload_model:
            yield weights(s)
        if loop and "before_dit_loop" in points:
            yield ("empty_cache",), [("empty_cache",)]
        runs = min(rec.get("invocations", 1), LOOP_REPLAYS if loop else 2)
        for k in range(runs):
            ev = rec["events"]
            yield ("events", s, k, ev), _run_events(s, k, ev)
            if loop and "after_each_dit_call" in points:
                yield ("empty_cache",), [("empty_cache",)]
        if offload_model:
            n = len(rec["weights"])
            yield ("free", s, n), _weight_frees(s, n)
        if loop and "after_dit_loop" in points:
            yield ("empty_cache",), [("empty_cache",)]


def pipeline_program(stages: dict, order, offload_model: bool, points=frozenset(), loop_stage="diffusion_core"):
    """The allocator program of one generation (a generator of replay operations).
    ``stages``: per stage {"events": one invocation's ("alloc", key, bytes)/("free", key)
    list, "weights": [bytes of each resident weight tensor], "invocations": int, "on_gpu"}.
    Without offload every GPU stage's weights are allocated first and stay; with
    ``offload_model`` a stage's weights are allocated when it starts and freed when it
    ends. The loop stage runs :data:`LOOP_REPLAYS` times (its pattern repeats after that),
    other stages as often as they run (at most twice); ``points``: where the cache is
    emptied (:func:`empty_cache_points`)."""
    for _, ops in _segments(stages, order, offload_model, points, loop_stage):
        yield from ops


#: allocator states after the part of a generation's program that comes before the loop
#: stage's events (the weights, the text encoder's runs), by (expandable, the segment keys of
#: that part): the same operations leave the same state, whatever comes after them (bounded;
#: an entry is only ever read through a copy)
_PREFIX_STATES: OrderedDict = OrderedDict()
_PREFIX_LOCK = threading.Lock()
_PREFIX_MAX = 8


def replay_pipeline(stages: dict, order, offload_model: bool, points=frozenset(), expandable: bool = False,
                    loop_stage: str = "diffusion_core") -> dict:
    """``replay(pipeline_program(stages, order, offload_model, points, loop_stage),
    expandable)`` — the same numbers, faster: the program's part before the loop stage's
    first events (its key: :func:`_segments`) leaves the allocator in a state that depends on
    those operations only, so a part already replayed (bounded cache) is not replayed again:
    the rest continues from a copy of its state. Returns {"peak_allocated_bytes",
    "peak_reserved_bytes"} (ints)."""
    segs = list(_segments(stages, order, offload_model, points, loop_stage))
    cut = next((i for i, (k, _) in enumerate(segs) if k[0] == "events" and k[1] == loop_stage), len(segs))
    key = (bool(expandable), tuple(k for k, _ in segs[:cut]))
    try:
        hash(key)
    except TypeError:           # events given as lists: nothing to key on, replay it all
        return replay((op for _, ops in segs for op in ops), expandable)
    with _PREFIX_LOCK:
        base = _PREFIX_STATES.get(key)
        if base is not None:
            _PREFIX_STATES.move_to_end(key)
    if base is None:
        base = CachingAllocator(expandable)
        for _, ops in segs[:cut]:
            _run(base, ops)
        with _PREFIX_LOCK:
            _PREFIX_STATES[key] = base
            while len(_PREFIX_STATES) > _PREFIX_MAX:
                _PREFIX_STATES.popitem(last=False)
    rest = segs[cut:]
    while rest and rest[-1][0][0] in ("free", "empty_cache"):
        rest.pop()                  # after the last allocation: frees lower no peak
    a = base.copy()
    for i, (k, ops) in enumerate(rest):
        if k[0] == "free" and i + 1 < len(rest) and rest[i + 1][0][0] == "empty_cache" and \
                a.holds_only(("w", k[1], j) for j in range(k[2])):
            a.release_all()         # these frees and the empty_cache after them (which then finds nothing)
            continue
        if k[0] == "events":        # the operations of _run_events, without making them
            a.run_events(k[1], k[2], k[3])
        else:
            _run(a, ops)
    return _peaks(a)
