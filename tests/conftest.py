import atexit
import os
import shutil
import tempfile

# Backend choices and engines are cached under ARTFORGE_CACHE_DIR; the suite
# (and the CLI subprocesses it starts, which inherit it) must never write to
# the user's ~/.cache.
if not os.environ.get("ARTFORGE_CACHE_DIR"):
    os.environ["ARTFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="artforge-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ARTFORGE_CACHE_DIR"], True)

# Tests share 2 cores with each other's subprocesses; keep libraries from
# oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
