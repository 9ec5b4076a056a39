# Drives decode_layers_ring.py: random schedules of the weight ring of
# src/backend/cuda/decode_layers.cu (its producer lanes, the bulk copies and eight consumer
# warps) under PTX's mbarrier parity rules, at the TinyLlama-1.1B shape on 132 blocks (rings of
# 8, 16, 46, 47, 48 slots) and at a width-256 shape. A design check of the protocol, not a
# test of the kernel: change both together. Each mutation (noslotunit: consumers skip the
# slot_unit wait; freelanes: producer lanes not in lockstep; width32; nofullwait) must FAIL.
#   python3 tools/sim/decode_layers_ring_drive.py N_PER [mutations] [seed]   (LONG=22: 22 layers)
import sys, time, random
from collections import Counter
from multiprocessing import Pool
from decode_layers_ring import one
import os
LONG = int(os.environ.get('LONG', '0'))
TINY = (2048, 5632, 2560); SMALL = (256, 512, 512)
def job(args):
    S, shape, G, b, L, seed, mode, mut = args
    err, tail, ev, cov = one(S, shape, G, b, L, seed, mode, mut)
    return args, err, tail, ev, cov
def jobs(n_per, mut=None, seed0=0):
    out = []; rnd = random.Random(seed0)
    for S in (8, 16, 46, 47, 48):
        for i in range(n_per):
            b = i % 132 if i < 132 else rnd.randrange(132)
            L = LONG if LONG else rnd.choice((2, 3, 3, 4))
            mode = 'uniform' if i % 3 == 0 else 'regime'
            out.append((S, TINY, 132, b, L, seed0 * 1000003 + S * 100003 + i, mode, mut))
    for i in range(n_per):
        G = (132, 132, 1, 3, 16)[i % 5]; b = rnd.randrange(G); L = LONG if LONG else rnd.choice((2, 3, 4, 6))
        mode = 'uniform' if i % 3 == 0 else 'regime'
        out.append((8, SMALL, G, b, L, seed0 * 1000003 + 7 * 100003 + i, mode, mut))
    return out
if __name__ == '__main__':
    n_per = int(sys.argv[1]); mut = set(sys.argv[2].split(',')) if len(sys.argv) > 2 and sys.argv[2] else None
    seed0 = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    J = jobs(n_per, mut, seed0); t = time.time(); fails = {}; cnt = {}; ev = 0; cov = {}
    with Pool(2) as p:
        for args, err, tail, e, cv in p.imap_unordered(job, J, chunksize=4):
            key = (args[0], 'tiny' if args[1] == TINY else 'small'); cnt[key] = cnt.get(key, 0) + 1; ev += e; cov.setdefault(key, Counter()).update(cv)
            if err:
                fails.setdefault(key, []).append((args, err, tail))
    print(f'{len(J)} schedules, {ev} events, {time.time() - t:.0f}s, mut={mut}')
    for k in sorted(cnt): print(k, 'schedules', cnt[k], 'FAIL', len(fails.get(k, [])), dict(cov.get(k, {})))
    for k, fl in sorted(fails.items()):
        args, err, tail = fl[0]
        print('---', k, 'first failure: S=%d G=%d b=%d L=%d seed=%d mode=%s' % (args[0], args[2], args[3], args[4], args[5], args[6]))
        print(err)
        if '-v' in sys.argv: print('\n'.join(tail[-15:]))
