#!/usr/bin/env python3
"""Writes a deterministic random line-protocol file for replay equivalence checks.

Usage: gen_random.py HOSTS HOURS > random.lp   (starts 2024-05-01T00:00:00Z, one point a minute,
random walks with spikes, random gaps per host). Same arguments, same bytes.
"""
import random
import sys

hosts = int(sys.argv[1]) if len(sys.argv) > 1 else 50
hours = int(sys.argv[2]) if len(sys.argv) > 2 else 6
rng = random.Random(20241123)
start = 1714521600
out = sys.stdout
state = {h: [rng.uniform(10, 60), rng.uniform(30, 70), rng.uniform(40, 85), rng.uniform(0.1, 1.5)] for h in range(hosts)}
gaps = {h: [] for h in range(hosts)}
for h in range(hosts):
    for _ in range(rng.randint(0, 3)):
        g0 = start + rng.randint(0, hours * 3600)
        gaps[h].append((g0, g0 + rng.randint(120, 3600)))
for m in range(hours * 60):
    t = start + m * 60
    for h in range(hosts):
        if any(a <= t < b for a, b in gaps[h]):
            continue
        s = state[h]
        s[0] = min(100, max(0, s[0] + rng.gauss(0, 6) + (40 if rng.random() < 0.01 else 0)))
        s[1] = min(100, max(0, s[1] + rng.gauss(0, 2)))
        s[2] = min(100, max(0, s[2] + rng.gauss(0.02, 0.3)))
        s[3] = max(0, s[3] + rng.gauss(0, 0.4))
        host = f"host{h:03d}"
        env = "prod" if h % 3 else "dev"
        out.write(f"cpu,host={host},cpu=cpu-total,env={env} usage_total={s[0]:.3f},usage_idle={100 - s[0]:.3f} {t}\n")
        out.write(f"mem,host={host} used_percent={s[1]:.3f} {t}\n")
        out.write(f"disk,host={host},path=/,device=sda1,fstype=ext4 used_percent={s[2]:.3f} {t}\n")
        out.write(f"system,host={host} load5_per_core={s[3]:.3f},n_cpus=4i {t}\n")
