"""The on-disk cache of built native modules: a folder per key that you can inspect.

Layout (``key`` is a sha256 hex digest computed by `build.cache_key`)::

    cache_dir()/
      <key[:2]>/<key>/            one entry, published whole by an atomic rename
          c2c_<key[:16]>.pyx      the generated source (what a traceback or a BuildError points at)
          c2c_<key[:16]><EXT_SUFFIX>
          manifest.json           sha256 of the .so, the key inputs, build timings
      <key[:2]>/<key>.lock        per-key flock, held while one process builds that key
      <key[:2]>/<key>.failed/     the last failed build of that key (its .pyx, Cython's listing)
      <alias[:2]>/<alias>.alias   text file: the full key for the same inputs minus the C compiler,
                                  so a machine whose compiler is gone still loads what it built
      .tmp/                       builds in progress (same filesystem, so the rename is atomic)

The generated .c (hundreds of KB, mostly Cython boilerplate) is deleted after a build: the .pyx
says everything it did, and Cython regenerates it identically.

Invariants:
- An entry is trusted only if ``manifest.json`` parses, names this key, and the sha256 of the .so
  matches it. Anything else is rebuilt (``counters["rebuilt_corrupt"]``), never loaded.
- Entries are never modified in place: a finished build is renamed into place under the lock, and
  a corrupt one is first renamed aside. So a process that has a .so mapped never sees it change,
  and readers need no lock.
- Nothing here raises for a cache that is unusable; callers get the OSError and fall back to an
  uncached build (see `build.build_module`).

`C2C_CACHE=0` (or `with disabled():`) skips the cache and the in-process memo: every call
rebuilds into a private temp folder.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import threading
import time
import types

CACHE_VERSION = 1  # bump when the build recipe changes in a way the key inputs do not show

MANIFEST = "manifest.json"
LOCK_TIMEOUT_S = 600.0  # a cold build of a big net takes tens of seconds; this is a hung peer
STALE_TMP_S = 24 * 3600  # .tmp/ builds older than this were left by a crashed process

counters: dict[str, int] = {"hit": 0, "miss": 0, "memory_hit": 0, "rebuilt_corrupt": 0}
"""hit: loaded from disk; miss: built by this process (any reason, cached or not);
memory_hit: served from the in-process memo; rebuilt_corrupt: an entry that failed its check."""

_memory: dict[str, types.ModuleType] = {}
_disabled_depth = 0
_key_locks: dict[str, threading.Lock] = {}
_key_locks_guard = threading.Lock()


# ----------------------------------------------------------------------------- where and whether

def cache_dir() -> pathlib.Path:
    """$C2COMPILE_CACHE_DIR, else $XDG_CACHE_HOME/c2compile, else ~/.cache/c2compile."""
    explicit = os.environ.get("C2COMPILE_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "c2compile"


def enabled() -> bool:
    """False under `disabled()` or with C2C_CACHE=0."""
    return _disabled_depth == 0 and os.environ.get("C2C_CACHE", "1") != "0"


@contextlib.contextmanager
def disabled():
    """Like C2C_CACHE=0 for the duration: no memo, no disk cache, always a fresh build."""
    global _disabled_depth
    _disabled_depth += 1
    try:
        yield
    finally:
        _disabled_depth -= 1


def clear_memory() -> None:
    """Forget the in-process memo (tests), so the next lookup goes to disk.

    A process can load one extension module only once, so a later disk hit for the same key
    still returns the module object already loaded (see `build.load_so`)."""
    _memory.clear()


def reset_counters() -> None:
    for name in counters:
        counters[name] = 0


def memory_get(key: str) -> types.ModuleType | None:
    return _memory.get(key)


def memory_put(key: str, module: types.ModuleType) -> None:
    _memory[key] = module


def key_lock(key: str) -> threading.Lock:
    """Serializes threads of this process on one key (flock alone would let them race on
    the memo)."""
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


# ----------------------------------------------------------------------------- entries

def entry_dir(key: str, root: pathlib.Path | None = None) -> pathlib.Path:
    return (root or cache_dir()) / key[:2] / key


def sha256_file(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_entry(entry: pathlib.Path, key: str, so_name: str) -> str | None:
    """None if `entry` is a trustworthy build of `key`, else why not ("absent" if there is none)."""
    if not entry.is_dir():
        return "absent"
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return "manifest is for another key"
    try:
        digest = sha256_file(entry / so_name)
    except OSError as err:
        return f"unreadable module ({err})"
    if digest != manifest.get("so_sha256"):
        return "module does not match its manifest's sha256"
    return None


def write_manifest(build: pathlib.Path, key: str, so_name: str, **info) -> None:
    manifest = {"key": key, "so": so_name, "so_sha256": sha256_file(build / so_name), **info}
    (build / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def new_build_dir(key: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """A private folder on the cache's filesystem to build `key` in (OSError if unwritable)."""
    tmp = (root or cache_dir()) / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    _sweep_stale(tmp)
    return pathlib.Path(tempfile.mkdtemp(prefix=f"{key[:16]}-{os.getpid()}-", dir=tmp))


def _sweep_stale(tmp: pathlib.Path) -> None:
    now = time.time()
    with contextlib.suppress(OSError):
        for child in tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - child.stat().st_mtime > STALE_TMP_S:
                    shutil.rmtree(child, ignore_errors=True)


def publish(build: pathlib.Path, key: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """Move a finished `build` folder into place as the entry for `key`; call under `locked`.

    A (corrupt) entry already there is renamed aside first and then deleted, so the entry path
    never holds a half-written folder."""
    entry = entry_dir(key, root)
    if entry.exists():
        aside = entry.with_name(f"{key}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(entry, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(build, entry)
    return entry


def keep_failed(build: pathlib.Path, key: str, root: pathlib.Path | None = None) -> pathlib.Path:
    """Keep a failed build as `<key>.failed` (replacing an older one) so its .pyx can be read."""
    failed = entry_dir(key, root).with_name(f"{key}.failed")
    try:
        if failed.exists():
            shutil.rmtree(failed)
        os.rename(build, failed)
        return failed
    except OSError:
        return build


def write_alias(alias: str, key: str, root: pathlib.Path | None = None) -> None:
    """Record that `alias` (the key minus the C compiler) was last built as `key`."""
    path = entry_dir(alias, root).with_name(f"{alias}.alias")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(key)
    os.replace(tmp, path)


def read_alias(alias: str, root: pathlib.Path | None = None) -> str | None:
    try:
        key = entry_dir(alias, root).with_name(f"{alias}.alias").read_text().strip()
    except OSError:
        return None
    return key if len(key) == 64 and all(c in "0123456789abcdef" for c in key) else None


class LockTimeout(OSError):
    pass


@contextlib.contextmanager
def locked(key: str, timeout: float | None = None, root: pathlib.Path | None = None):
    """Hold the per-key flock (blocking up to `timeout` s; LockTimeout after that).

    flock is released by the kernel when its holder dies, so a leftover .lock file from a
    crashed process never blocks anyone. OSError if the cache cannot hold a lock file."""
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    path = entry_dir(key, root).with_name(f"{key}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    errno.ETIMEDOUT,
                    f"waited {timeout:.0f} s for another process building the same module "
                    f"(lock {path}); if it is stuck, stop it, or set C2C_CACHE=0",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        yield path
    finally:
        os.close(fd)  # closing the descriptor drops the flock
