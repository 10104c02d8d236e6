import os

# Tests share 2 cores with each other's subprocesses; keep libraries from
# oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
