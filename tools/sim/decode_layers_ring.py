# Event simulation of decode_layers' ring protocol (src/backend/cuda/decode_layers.cu), one block,
# PTX mbarrier semantics (count, pending arrivals, tx-count, phase; try_wait.parity P succeeds
# iff the phase in progress has parity != P, so it cannot tell round r from r-2).
# Agents: producer lanes (lockstep groups of width=min(32,slots) per matrix, __syncwarp after each
# group), the bulk-copy engine (each copy lands in 1 KB chunks, in any order, any latency, each
# chunk = write bytes then complete_tx), consumer warps (2 lanes each: lane 0 and one other,
# independently scheduled; __syncwarp; lane 0 arrives on empty), finish_phase (all consumers) +
# grid barrier (random delay; attention delay before wo).
import random, heapq, sys, itertools

class Err(Exception): pass

class Bar:
    __slots__ = ('name', 'count', 'pending', 'tx', 'phase', 'waiters', 'sim')
    def __init__(s, sim, name, count=1):
        s.sim = sim; s.name = name; s.count = count; s.pending = count; s.tx = 0; s.phase = 0; s.waiters = []
    def arrive(s, who):
        if s.pending <= 0: raise Err(f'over-arrival on {s.name} phase {s.phase} by {who}')
        s.pending -= 1; s.sim.log(f'{who} arrive {s.name} (phase {s.phase}, pending {s.pending}, tx {s.tx})'); s._check(who)
    def expect_tx(s, b, who):
        s.tx += b
    def complete_tx(s, b, who, unit):
        s.tx -= b
        if s.tx < 0: raise Err(f'tx-count of {s.name} negative after complete_tx by {who}')
        s._check(who, unit)
    def _check(s, who, unit=None):
        if s.pending == 0 and s.tx == 0:
            if unit is not None and s.sim.check_round and unit // s.sim.S != s.phase:
                raise Err(f'{s.name} phase {s.phase} completed by bytes of unit {unit} (round {unit // s.sim.S})')
            s.phase += 1; s.pending = s.count
            s.sim.log(f'{s.name} completes phase {s.phase - 1}')
            s.sim.notify(s)
    def try_wait_parity(s, P): return (s.phase & 1) != P

class Cell:  # slot_unit[slot], volatile shared
    __slots__ = ('val', 'waiters', 'name')
    def __init__(s, name): s.val = 0xFFFFFFFF; s.waiters = []; s.name = name

class Join:
    __slots__ = ('n', 'arrived', 'post')
    def __init__(s, n, post=None): s.n = n; s.arrived = []; s.post = post

def units_of(shape, G, b, L):
    C, F, qkv = shape
    mats = [(qkv, C), (C, C), (2 * F, C), (C, F)]
    out = []; u0 = 0
    for l in range(L):
        for m, (O, I) in enumerate(mats):
            r0 = O * b // G; r1 = O * (b + 1) // G; npp = (I + 2047) // 2048; n = (r1 - r0) * npp
            byts = [min(2048, I - (k % npp) * 2048) * 2 for k in range(n)]
            warps = [[u0 + j * npp + p for j in range(w, r1 - r0, 8) for p in range(npp)] for w in range(8)]
            out.append(dict(l=l, m=m, u0=u0, n=n, bytes=byts, warps=warps)); u0 += n
    return out

class Sim:
    def __init__(s, S, mats, rnd, regime, mut=None, trace=False):
        s.S = S; s.mats = mats; s.rnd = rnd; s.R = regime; s.mut = mut or set(); s.check_round = True
        s.full = [Bar(s, f'full[{i}]') for i in range(S)]
        s.empty = [Bar(s, f'empty[{i}]') for i in range(S)]
        s.slot_unit = [Cell(f'slot_unit[{i}]') for i in range(S)]
        s.content = [[None] * 4 for _ in range(S)]   # unit whose bytes are in each 1 KB chunk
        s.reading = [set() for _ in range(S)]
        s.released = [None] * S                       # last unit whose consumer arrived on empty[s]
        s.heap = []; s.seq = itertools.count(); s.now = 0.0
        s.live = 0; s.trace = [] if trace else None; s.tail = []
        s.events = 0
        from collections import Counter; s.cov = Counter()
    def log(s, msg):
        s.tail.append(f'{s.now:10.1f} {msg}')
        if len(s.tail) > 60: del s.tail[:20]
    def d(s, kind):
        lo, mean, stall_p, stall = s.R[kind]
        x = lo + s.rnd.expovariate(1.0 / mean) if mean > 0 else lo
        if s.rnd.random() < stall_p: x += s.rnd.random() * stall
        return x
    def at(s, t, g, name): heapq.heappush(s.heap, (t, next(s.seq), g, name))
    def spawn(s, g, name, delay=0.0): s.live += 1; s.at(s.now + delay, g, name)
    def notify(s, obj):
        w = obj.waiters; obj.waiters = []
        for (g, name, kind) in w: s.at(s.now + s.d(kind), g, name)
    def run(s, limit=5_000_000):
        while s.heap:
            t, _, g, name = heapq.heappop(s.heap); s.now = t; s.events += 1
            if s.events > limit: raise Err('event limit (livelock?)')
            s.step2(g, name)
        if s.live: raise Err(f'DEADLOCK: {s.live} agents blocked; waiters: ' + s.blocked())
    def blocked(s):
        out = []
        for lst in (s.full, s.empty, s.slot_unit):
            for o in lst:
                for (_, n, _) in o.waiters: out.append(f'{n} on {o.name}')
        return '; '.join(out[:20])
    def step2(s, g, name):
        while True:
            try: req = next(g)
            except StopIteration: s.live -= 1; return
            op = req[0]
            if op == 'delay': s.at(s.now + req[1], g, name); return
            if op in ('spin', 'block'):
                _, obj, cond, kind = req
                if op == 'spin' and cond(): continue
                obj.waiters.append((g, name, kind)); return
            if op == 'join':
                j = req[1]; j.arrived.append((g, name))
                if len(j.arrived) == j.n:
                    base = s.now + (j.post() if j.post else 0.0)
                    arr = j.arrived; j.arrived = []
                    for (g2, n2) in arr: s.at(base + s.d('jit'), g2, n2)
                return

def spin_until(obj, cond, kind):
    # a spin loop: each iteration is one evaluation at some time; blocks until obj changes
    while not cond():
        yield ('block', obj, cond, kind)

# ---------------- producer ----------------
def producer(sim):
    S = sim.S
    width = 32 if 'width32' in sim.mut else min(32, S)
    if 'freelanes' in sim.mut:   # the pre-fix producer: lanes free-running, k = lane, lane+width, ...
        for ln in range(width):
            sim.spawn(free_lane(sim, ln, width), f'P{ln}', sim.d('prod'))
        return
        yield
    for mx in sim.mats:
        n = mx['n']
        for k0 in range(0, n, width):
            act = [k for k in range(k0, min(k0 + width, n))]
            j = Join(len(act) + 1)
            for k in act:
                sim.spawn(prod_unit(sim, mx, k, j), f'P{k - k0}', sim.d('prod'))
            yield ('join', j)   # __syncwarp

def prod_unit(sim, mx, k, j):
    yield from issue(sim, mx, k, f'P{k % 32}')
    yield ('join', j)

def free_lane(sim, ln, width):
    for mx in sim.mats:
        for k in range(ln, mx['n'], width):
            yield from issue(sim, mx, k, f'P{ln}')

def issue(sim, mx, k, who):
    S = sim.S; u = mx['u0'] + k; s = u % S; r = u // S; b = mx['bytes'][k]
    e = sim.empty[s]
    if r > 0:
        P = (r - 1) & 1
        if not e.try_wait_parity(P): sim.cov['prod_waits_empty'] += 1
        yield from spin_until(e, lambda: e.try_wait_parity(P), 'pspin')
        sim.log(f'{who} unit {u}: empty[{s}].try_wait.parity({P}) passes (phase {e.phase})')
        if e.phase != r: raise Err(f'{who} unit {u} (round {r}) passed empty[{s}] wait at phase {e.phase}, not the round-{r-1} release')
    yield ('delay', sim.d('prod'))
    sim.slot_unit[s].val = u; sim.log(f'{who} slot_unit[{s}] = {u}'); sim.notify(sim.slot_unit[s])
    yield ('delay', sim.d('prod'))
    f = sim.full[s]
    f.expect_tx(b, who); f.arrive(f'{who}(unit {u} expect_tx {b})')
    yield ('delay', sim.d('prod'))
    # the copy is issued: the slot's previous unit must be released (consumed) and not being read
    if r > 0 and sim.released[s] != u - S:
        raise Err(f'{who} issues copy of unit {u} into slot {s} while unit {u - S} unconsumed (released: {sim.released[s]})')
    if sim.reading[s]: raise Err(f'{who} issues copy of unit {u} into slot {s} being read by {sim.reading[s]}')
    sim.log(f'{who} issues copy unit {u} -> slot {s} ({b} B)')
    nch = nchunks(b)
    for c in range(nch):
        cb = b // nch + (b % nch if c == nch - 1 else 0)
        sim.spawn(chunk(sim, u, s, c, cb), f'copy{u}.{c}', sim.d('copy'))

def nchunks(b): return max(1, min(4, b // 256))

def chunk(sim, u, s, c, cb):
    if sim.reading[s]: raise Err(f'copy of unit {u} writes slot {s} chunk {c} while read by {sim.reading[s]}')
    sim.content[s][c] = u
    sim.log(f'copy unit {u} chunk {c} lands in slot {s}')
    sim.full[s].complete_tx(cb, f'copy{u}.{c}', u)
    return
    yield

# ---------------- consumers ----------------
def consumer_lane(sim, w, L, cbar, wbar):
    S = sim.S; who = f'W{w}L{L}'
    for mi, mx in enumerate(sim.mats):
        for v in mx['warps'][w]:
            s = v % S; r = v // S
            yield ('delay', sim.d('cons'))
            if 'noslotunit' not in sim.mut:
                cell = sim.slot_unit[s]
                if cell.val != v:
                    sim.cov['cons_waits_slot_unit'] += 1
                    if sim.full[s].try_wait_parity(r & 1): sim.cov['parity_would_pass_wrong_round'] += 1
                yield from spin_until(cell, lambda: cell.val == v, 'cspin')
            f = sim.full[s]; P = r & 1
            if 'nofullwait' not in sim.mut:
                yield from spin_until(f, lambda: f.try_wait_parity(P), 'cspin')
            sim.log(f'{who} unit {v}: full[{s}].try_wait.parity({P}) passes (phase {f.phase})')
            nch = nchunks(mx['bytes'][v - mx['u0']])
            bad = [c for c in range(nch) if sim.content[s][c] != v]
            if bad or f.phase != r + 1:
                raise Err(f'{who} reads slot {s} for unit {v}: chunks {bad} hold {[sim.content[s][c] for c in bad]}, full phase {f.phase} (want {r + 1})')
            sim.reading[s].add(who)
            yield ('delay', sim.d('read'))
            bad = [c for c in range(nch) if sim.content[s][c] != v]
            if bad: raise Err(f'{who} slot {s} changed under read of unit {v}')
            sim.reading[s].discard(who)
            yield ('join', wbar)            # __syncwarp
            if L == 0:
                yield ('delay', sim.d('cons'))
                e = sim.empty[s]
                if e.phase != r: raise Err(f'{who} releases unit {v} on empty[{s}] in phase {e.phase} (round {r})')
                sim.released[s] = v
                e.arrive(f'{who}(release unit {v})')
        yield ('join', cbar[mi])            # finish_phase + grid barrier (+ attention / build)

def make_cbars(sim, n):
    out = []
    for mi, mx in enumerate(sim.mats):
        nxt = sim.mats[mi + 1]['m'] if mi + 1 < len(sim.mats) else None
        kind = 'attn' if nxt == 1 else 'grid'
        out.append(Join(n, (lambda k=kind: sim.d(k))))
    return out

def build_regime(rnd, mode):
    def R(lo, mean, sp=0.0, st=0.0): return (lo, mean, sp, st)
    if mode == 'uniform':   # every step an independent random delay: random interleavings
        return {k: R(0, 1, 0.05, 50) for k in ('prod', 'pspin', 'cspin', 'cons', 'read', 'jit', 'grid', 'attn', 'copy')}
    pick = lambda *xs: rnd.choice(xs)
    return {
        'prod': R(0, pick(1, 5, 30, 200), pick(0, 0.01, 0.05), pick(100, 2000, 20000)),
        'pspin': R(0, pick(1, 10, 100), pick(0, 0.02), 5000),
        'cspin': R(0, pick(1, 10, 100), pick(0, 0.02), 5000),
        'cons': R(0, pick(1, 10, 60), pick(0, 0.01, 0.05), pick(100, 3000, 30000)),
        'read': R(pick(0, 20, 100), pick(1, 50, 300), pick(0, 0.02), 10000),
        'jit': R(0, pick(1, 20, 200), 0.05, 2000),
        'grid': R(0, pick(1, 500, 5000, 50000), 0.1, 100000),
        'attn': R(0, pick(1, 2000, 20000, 100000), 0.1, 200000),
        'copy': R(pick(0, 500, 800), pick(10, 500, 4000, 20000), pick(0, 0.02, 0.1), pick(1000, 50000)),
    }

def one(S, shape, G, b, L, seed, mode, mut=None):
    rnd = random.Random(seed)
    mats = units_of(shape, G, b, L)
    sim = Sim(S, mats, rnd, build_regime(rnd, mode), mut)
    cbar = make_cbars(sim, 16)
    sim.spawn(producer(sim), 'producer', 0.0)
    for w in range(8):
        wbar = Join(2)
        for L_ in (0, 1):
            sim.spawn(consumer_lane(sim, w, L_, cbar, wbar), f'W{w}L{L_}', sim.d('jit'))
    try:
        sim.run()
    except Err as e:
        return str(e), sim.tail[-25:], sim.events, sim.cov
    # end state: every unit released
    tot = mats[-1]['u0'] + mats[-1]['n']
    for s_ in range(S):
        last = max([u for u in range(s_, tot, S)], default=None)
        if last is not None and sim.released[s_] != last:
            return f'slot {s_} last release {sim.released[s_]} != {last}', sim.tail[-25:], sim.events, sim.cov
    return None, None, sim.events, sim.cov
