"""Cache directory, device resolution and atomic writes shared by every module."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch


def home() -> Path:
    """The workbench cache (`WORKBENCH_HOME`, default `~/.cache/workbench`)."""
    root = Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".cache" / "workbench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The one place that picks a device: explicit > `WORKBENCH_DEVICE` > cuda > mps > cpu.

    An explicit device that does not exist or is not available here is a DeviceError (one line).
    """
    from workbench.errors import DeviceError
    source = "device"
    if device is None:
        device = os.environ.get("WORKBENCH_DEVICE")
        source = "WORKBENCH_DEVICE"
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"{source} {str(device)!r} is not a device (cpu, cuda, cuda:N, mps or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{source} {str(device)!r}: no CUDA GPU is available here; use cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{source} {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError(f"{source} {str(device)!r}: MPS is not available here; use cpu (or auto)")
    elif dev.type != "cpu":
        raise DeviceError(f"{source} {str(device)!r}: the workbench runs on cpu, cuda or mps")
    return dev


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
           "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = tuple(_DTYPES)          # what `--dtype` accepts (workbench.cli.common.add_model_args)


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        from workbench.errors import DeviceError
        raise DeviceError(f"dtype={dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


_TMP_TAG = ".wbtmp-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_temps(target: str | Path) -> list[Path]:
    """Remove temporary siblings of `target` left by a writer that died (its pid is gone); returns them."""
    target = Path(target)
    removed = []
    prefix = f".{target.name}{_TMP_TAG}"
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for sib in siblings:
        if not sib.name.startswith(prefix):
            continue
        pid = sib.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            if sib.is_dir() and not sib.is_symlink():
                shutil.rmtree(sib, ignore_errors=True)
            else:
                sib.unlink(missing_ok=True)
            removed.append(sib)
    old = target.with_name(f".{target.name}.old")           # left by the older two-rename replace
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return rc == 0


def check_output_folder(out: str | Path, markers: tuple[str, ...], what: str, source: str | Path | None = None) -> Path:
    """Refuse an output folder that may not be written (call it before loading or fitting anything).

    `out` may be new, an empty folder or an earlier output holding one of the `markers` files
    (`what` names that kind of output in the message); never a file, a symlink, another non-empty
    folder or the `source` folder being read. Replacing a folder deletes what it held, so
    anything else is a UsageError (one line).
    """
    from workbench.errors import UsageError
    out = Path(out)
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: {out.parent} is not a directory")
    if out.is_symlink():
        raise UsageError(f"refusing to replace {out}: it is a symlink")
    if not out.exists():
        return out
    if source is not None and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise UsageError(f"refusing to write {out}: it is the folder being read")
    if not out.is_dir():
        raise UsageError(f"refusing to replace {out}: it is a file, not {what}")
    if any(out.iterdir()) and not any((out / m).is_file() for m in markers):
        raise UsageError(f"refusing to replace {out}: it is a non-empty folder that is not {what}")
    return out


@contextmanager
def atomic_path(target: str | Path, is_dir: bool = False):
    """Yield a temporary sibling path; on success move it onto `target` (write, then rename).

    A folder replaces an existing folder with one atomic exchange (renameat2) where the OS has
    it, else with two renames. Temporaries are named `.NAME.wbtmp-PID.*`; ones left by dead
    processes are removed first. Folders get the same permissions as files (umask applied).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    umask = os.umask(0)
    os.umask(umask)
    prefix = f".{target.name}{_TMP_TAG}{os.getpid()}."
    if is_dir:
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"refusing to replace {target}: it is a file, not a folder")
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        os.chmod(tmp, 0o777 & ~umask)           # mkdtemp makes 0700; written folders should be ordinary
    else:
        if target.is_dir():
            raise IsADirectoryError(f"refusing to replace {target}: it is a folder")
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; written files should be ordinary
    try:
        yield tmp
        if is_dir and target.exists():
            if _exchange(tmp, target):          # tmp now holds the old folder
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def _json_default(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")
