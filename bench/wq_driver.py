"""Drives cctools Work Queue for `deno task bench`: one manager, one worker on loopback.

    python3 bench/wq_driver.py JOBS_FILE CORES

Submits every line of JOBS_FILE as a one-core task at once (queued together, as
vico's manager holds its list), starts one `work_queue_worker --cores CORES`, waits
for every task and prints VICO_BENCH_WQ={"seconds", "tasks", "failed"} (JSON) on
stderr, timed from the first submit to the last result.
"""

import json
import subprocess
import sys
import time

try:
    import ndcctools.work_queue as wq  # cctools >= 7.4 from conda or source
except ImportError:
    import work_queue as wq  # Debian's python3-workqueue

jobs_file, cores = sys.argv[1], int(sys.argv[2])
with open(jobs_file) as f:
    commands = [line.rstrip("\n") for line in f if line.strip()]
queue = wq.WorkQueue(port=0)
worker = subprocess.Popen(
    ["work_queue_worker", "--cores", str(cores), "--single-shot", "127.0.0.1", str(queue.port)],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
start = time.time()
for command in commands:
    task = wq.Task(command)
    task.specify_cores(1)
    queue.submit(task)
failed = 0
while not queue.empty():
    task = queue.wait(5)
    if task is not None and (task.result != 0 or task.return_status != 0):
        failed += 1
seconds = time.time() - start
worker.terminate()
worker.wait()
print("VICO_BENCH_WQ=" + json.dumps({"seconds": seconds, "tasks": len(commands), "failed": failed}), file=sys.stderr)
