#!/usr/bin/env python3
"""Runs a command and prints one JSON line: exit code, wall time, peak RSS of the largest process it
ran, and bytes it caused to be written to block devices (getrusage of the children: ru_maxrss,
ru_oublock × 512). Writes to tmpfs do not count, writes to disk do."""
import json
import resource
import subprocess
import sys
import time

start = time.monotonic()
proc = subprocess.run(sys.argv[1:])
wall = time.monotonic() - start
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "rc": proc.returncode,
    "wall_s": round(wall, 3),
    "maxrss_mib": round(ru.ru_maxrss / 1024, 1),
    "written_mib": round(ru.ru_oublock * 512 / 1048576, 1),
}))
