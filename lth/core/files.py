"""Files on disk: atomic writes and verified loads (where each file lives: lth.runs.layout).

Every tensor file carries what it is ('weights' or 'mask') and which model it belongs to, and is
checked against the model's shapes when loaded, so a mismatched or damaged file is an error that
names it, never a silently wrong result. Loads use `weights_only=True`: a shared cache can't run code.
A torch archive does not notice flipped bits inside a tensor, so tensor files also carry a SHA-256 of
their contents; a full disk while writing leaves the previous version of the file in place.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from lth.core.errors import LthError

FORMAT = "lth/1"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`.

    The temp file gets a fresh random name, created exclusively (mkstemp: O_EXCL), so nobody can plant a
    symlink there; the rename replaces whatever `path` was (a symlink is replaced, not followed). The file
    ends with the permissions any tool's would have (0666 less the umask), so colleagues can read results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise write_error(path, exc) from None
        raise
    _fsync_directory(path.parent)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: Path, exc: OSError) -> LthError:
    """An OS error while writing `path` as one clear line; the previous version of the file is untouched."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LthError(f"no space left on the device while writing {path}; the previous version of that file "
                        "(if any) is intact: free some space and rerun the same command to continue")
    return LthError(f"cannot write {path}: {exc.strerror or exc}")


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (a power cut right after a save keeps the new file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


def write_json(path: str | Path, payload: Any) -> None:
    """Strict JSON, atomically: a NaN or infinity (a loss before any step, a diverged run) is written as null,
    which every JSON parser reads (bare NaN is not JSON)."""
    atomic_write_bytes(path, (json.dumps(_finite(payload), indent=2, sort_keys=False, allow_nan=False) + "\n").encode())


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LthError(f"missing file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LthError(f"corrupted JSON file {path}: {exc}") from None


def check_result(path: str | Path, made_with: Mapping[str, Any], force: bool = False) -> None:
    """A result file is never replaced silently by one made with other settings: an LthError names what differs
    and the ways out. A result made with the same settings (a rerun), or no result yet, passes; `force` replaces.
    The result file records its settings under `made_with` (`write_result`)."""
    from lth.core.config import differences, plain

    path = Path(path)
    if force or not path.is_file():
        return
    try:
        existing = read_json(path)
    except LthError:
        existing = {}
    recorded = existing.get("made_with") if isinstance(existing, dict) else None
    if recorded == plain(made_with):
        return
    diffs = "; ".join(differences(recorded, plain(made_with))) if isinstance(recorded, dict) else "not recorded there"
    raise LthError(f"{path} holds a result made with other settings ({diffs}): give another --out, or --force to "
                   "replace it")


def write_result(path: str | Path, payload: Mapping[str, Any], made_with: Mapping[str, Any]) -> None:
    """A result file (JSON, atomically) that records the settings it was made with, for `check_result`."""
    from lth.core.config import plain

    write_json(path, {**payload, "made_with": plain(made_with)})


def save_torch(path: str | Path, obj: Any) -> None:
    """torch.save, atomically (a crash never leaves a half-written file under `path`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: str | Path, what: str) -> Any:
    """torch.load with weights_only=True; a missing or damaged file is an LthError naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise LthError(f"missing {what} file {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupted zip archives
        raise LthError(f"corrupted or truncated {what} file {path} ({type(exc).__name__}); delete it and rerun") from None


def tensor_checksum(tensors: Mapping[str, Any]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).numpy().view("uint8") if t.numel() else b"")
    return digest.hexdigest()


def save_tensors(path: str | Path, kind: str, model: str, tensors: Mapping[str, Any], **meta: Any) -> None:
    """Save a dict of tensors tagged with its kind, model, checksum and `meta` (e.g. settings=fingerprint), atomically."""
    plain = {k: v.detach().cpu() for k, v in tensors.items()}
    save_torch(path, {"format": FORMAT, "kind": kind, "model": model, "meta": dict(meta),
                      "checksum": tensor_checksum(plain), "tensors": plain})


def load_tensors(
    path: str | Path,
    kind: str,
    model: Optional[str] = None,
    shapes: Optional[Mapping[str, tuple[int, ...]]] = None,
    settings: Optional[str | Sequence[str]] = None,
) -> dict[str, Any]:
    """Load a tensor file written by `save_tensors`, verifying its checksum, kind, model and (optionally)
    shapes and the settings fingerprint it was saved with (files saved without one are not checked; several
    fingerprints: any of them, the first named in errors)."""
    payload = load_torch(path, kind)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("tensors"), dict):
        raise LthError(f"{path} is not an lth {kind} file")
    if payload.get("kind") != kind:
        raise LthError(f"{path} holds a {payload.get('kind')} file where a {kind} file was expected")
    if model is not None and payload.get("model") != model:
        raise LthError(f"{path} belongs to model '{payload.get('model')}', not '{model}'")
    tensors = payload["tensors"]
    if "checksum" in payload and payload["checksum"] != tensor_checksum(tensors):
        raise LthError(f"corrupted {kind} file {path}: its contents do not match the checksum saved with it; "
                       "delete it and rerun")
    saved_with = (payload.get("meta") or {}).get("settings")
    accepted = (settings,) if isinstance(settings, str) else tuple(settings or ())
    if accepted and saved_with is not None and saved_with not in accepted:
        raise LthError(f"{path} was saved by a run with settings fingerprint {saved_with}, not {accepted[0]} "
                       "(a file from another run?); delete it and rerun")
    if shapes is not None:
        missing = sorted(set(shapes) - set(tensors))
        extra = sorted(set(tensors) - set(shapes))
        if missing or extra:
            raise LthError(f"{path} does not match model '{model}': missing {missing}, unexpected {extra}")
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != tuple(shape):
                raise LthError(
                    f"{path} does not match model '{model}': {name} has shape {tuple(tensors[name].shape)}, "
                    f"expected {tuple(shape)}"
                )
    return tensors
