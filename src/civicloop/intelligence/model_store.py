"""Model files: a trained classifier with its metadata, written and read with joblib.

A model file is a joblib dump of ``{"format": 1, "metadata": {...}, "model": TextClassifier}``. The
metadata say which model it is (``version``), what it was trained on (``data_fingerprint``: sha256 of the
training texts and labels, ``train_rows``), how it did on messages it never saw (``metrics``) and when
(``created_at``, ISO 8601 with offset, UTC). The app and ``civicloop model evaluate`` find the current
model at :func:`default_model_path`.

A model file is a pickle: load only files this deployment wrote (joblib/pickle run code on load).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from civicloop.core.errors import CivicloopError, NotFound
from civicloop.intelligence.classifier import TextClassifier

FORMAT = 1
DEFAULT_RELATIVE = Path("models") / "classifier.joblib"


class ModelNotFound(NotFound):
    """No model file at the given path (404 through the API)."""

    def __init__(self, path: Path) -> None:
        super().__init__("模型文件 model file", str(path))
        self.path = path


class ModelFileInvalid(CivicloopError):
    """A file that is not a civicloop model file of a format this code reads (400)."""

    code = "validation"

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__("validation", path=str(path), reason=reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class StoredModel:
    """A loaded model file: the classifier and its metadata."""

    model: TextClassifier
    metadata: dict[str, Any]
    path: Path


def default_model_path() -> Path:
    """Return where the current model lives: ``$CIVICLOOP_MODEL_PATH`` when set, else
    ``models/classifier.joblib`` under the current directory. Independent of the app's settings."""
    configured = os.environ.get("CIVICLOOP_MODEL_PATH")
    return Path(configured) if configured else Path.cwd() / DEFAULT_RELATIVE


def make_metadata(
    model: TextClassifier,
    *,
    fingerprint: str,
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the metadata of a model file.

    Takes the trained model, the training data's ``fingerprint`` (see
    :func:`civicloop.intelligence.data.fingerprint`), the held-out ``metrics`` (see
    :func:`civicloop.intelligence.classifier.evaluate`) and optional ``extra`` keys (split, timing). ``now``
    must be timezone-aware (default: the current time in UTC). ``version`` is
    ``"<method>-<UTC timestamp>-<first 8 hex digits of the fingerprint>"``. Raises ``ValueError`` for a
    naive ``now``."""
    import sklearn

    import civicloop

    created = now or datetime.now(UTC)
    if created.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    created = created.astimezone(UTC)
    metadata = {
        "version": f"{model.method}-{created:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}",
        "method": model.method,
        "labels": list(model.labels),
        "data_fingerprint": fingerprint,
        "train_rows": model.info.get("train_rows"),
        "features": model.info.get("features"),
        "train_seconds": model.train_seconds,
        "metrics": metrics,
        "created_at": created.isoformat(),
        "civicloop_version": getattr(civicloop, "__version__", None),
        "sklearn_version": sklearn.__version__,
    }
    metadata.update(extra or {})
    return metadata


def save(model: TextClassifier, metadata: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``model`` and ``metadata`` to ``path`` (default :func:`default_model_path`), creating its folder.

    Written to a temporary file in the same folder and renamed, so a reader never sees half a file.
    Returns the path written. Raises ``ValueError`` when ``metadata`` lacks ``version``,
    ``data_fingerprint``, ``metrics`` or ``created_at``; ``OSError`` when the folder is not writable."""
    missing = [key for key in ("version", "data_fingerprint", "metrics", "created_at") if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {missing}")
    target = Path(path) if path is not None else default_model_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        joblib.dump({"format": FORMAT, "metadata": metadata, "model": model}, temporary, compress=1)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def load(path: Path | None = None) -> StoredModel:
    """Read a model file (default :func:`default_model_path`).

    Returns a :class:`StoredModel`. Raises :class:`ModelNotFound` when there is no file and
    :class:`ModelFileInvalid` when it is not a model file of format :data:`FORMAT`."""
    source = Path(path) if path is not None else default_model_path()
    if not source.is_file():
        raise ModelNotFound(source)
    try:
        payload = joblib.load(source)
    except Exception as exc:  # a truncated or foreign file fails in many ways
        raise ModelFileInvalid(source, f"unreadable: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileInvalid(source, f"not a civicloop model file of format {FORMAT}")
    model, metadata = payload.get("model"), payload.get("metadata")
    if not isinstance(model, TextClassifier) or not isinstance(metadata, dict):
        raise ModelFileInvalid(source, "missing model or metadata")
    return StoredModel(model=model, metadata=metadata, path=source)


_CURRENT: dict[Path, tuple[float, StoredModel]] = {}


def current(path: Path | None = None) -> StoredModel | None:
    """Return the current model (default :func:`default_model_path`), loaded once per process and
    again only when the file changes (its modification time), or ``None`` when there is no file.

    This is what intake uses: a deployment without a trained model still takes requests; they all
    go to the dispatcher's queue. Raises :class:`ModelFileInvalid` for a file that is not a model."""
    source = Path(path) if path is not None else default_model_path()
    try:
        mtime = source.stat().st_mtime
    except OSError:
        _CURRENT.pop(source, None)
        return None
    cached = _CURRENT.get(source)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    stored = load(source)
    stored.model.warm_up()
    _CURRENT[source] = (mtime, stored)
    return stored
