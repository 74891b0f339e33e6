"""COS object keys: the one rule for which keys an output can be predicted at, and how a writer that
normalises paths would read a key.

Why this exists (issue 12): the batch planner predicted ``enhanced/dt=1/./dot.jpg`` while the
emulator wrote ``enhanced/dt=1/dot.jpg`` (it normalises paths; the provider did not), so skip-existing
never saw the output, every rerun paid again, and reconciliation rejected our own task. The planner,
skip-existing, collision detection and reconciliation must agree with the writer on where an output
lands, and for some key shapes nobody can know that:

* COS keys are any UTF-8 text up to **850 bytes**, not starting with ``/`` or ``\\``, without the
  control characters CAN, EM, SUB, ESC (doc 436/13324, "对象键 / 命名规范"); ``./``, ``//`` and ``..``
  segments are not mentioned — a key may contain them, and COS does not say it changes them;
* MPS takes ``OutputPath`` "relative or absolute, ending with ``.{format}``" (ProcessImage) and its
  ``{...}`` variables (doc 862/37039); whether it normalises ``.``/``..``/empty segments, and how a
  literal brace would be read, is undocumented.

So the provider refuses, per image, the shapes whose landing place is undocumented
(:func:`key_problem`): an empty, ``.`` or ``..`` segment, a leading or trailing ``/``, a brace, a
control character, or more than :data:`MAX_KEY_BYTES` bytes. Every key it does write is then the same
under every reading — kept verbatim or normalised — which is what :func:`is_stable` checks, so the
planned output *is* where the output lands, on the emulator and on the service alike.

:func:`normalize_key` is how a writer that normalises paths reads a key (``posixpath.normpath``
semantics, the emulator's writer today). The provider uses it as the identity of an output when it
looks for collisions, so two inputs whose outputs a normalising writer would merge (``a//b.png`` and
``a/b.png``) are caught even though one of them is refused anyway.

Pure stdlib; no other model import.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

__all__ = [
    "MAX_KEY_BYTES",
    "TOO_LONG",
    "UNSAFE",
    "KeyProblem",
    "is_stable",
    "key_problem",
    "normalize_key",
]

#: Longest COS object key, in UTF-8 bytes (doc 436/13324: "编码长度最大为850个字节").
MAX_KEY_BYTES = 850

#: Kinds of :class:`KeyProblem`.
UNSAFE = "unsafe"
TOO_LONG = "too_long"

#: Characters COS refuses in a key (CAN, EM, SUB, ESC; doc 436/13324), on top of which every other
#: control character is refused too: the request validator does (``check_path_text``).
_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f"}


@dataclass(frozen=True)
class KeyProblem:
    """Why a key cannot be written (or read) at a predictable place: ``kind`` is :data:`UNSAFE` or
    :data:`TOO_LONG`; ``reason`` is a sentence fragment for a message."""

    kind: str
    reason: str


def normalize_key(path: str) -> str:
    """The key a writer that normalises paths stores ``path`` at: ``posixpath.normpath`` of the
    absolute path, without the leading ``/`` (empty, ``.`` and trailing segments gone, ``..`` resolved,
    never above the bucket root). ``""`` when nothing is left.

    The emulator's output writer does exactly this today (``resolve_output``); it is also the
    identity the batch planner compares outputs by.
    """
    return posixpath.normpath("/" + path.lstrip("/")).lstrip("/")


def is_stable(key: str) -> bool:
    """Whether ``key`` is stored verbatim by every reading: kept as is, or normalised."""
    return bool(key) and normalize_key(key) == key


def key_problem(key: str, *, output: bool = True) -> KeyProblem | None:
    """Why ``key`` is not a key the provider can predict an object at, or ``None`` when it is.

    Refused: more than :data:`MAX_KEY_BYTES` bytes (:data:`TOO_LONG`); empty; a leading ``/`` or
    ``\\``; a trailing ``/`` (a folder marker); an empty, ``.`` or ``..`` segment; a control
    character; and, for an ``output`` key (sent as an ``OutputPath`` template), ``{`` or ``}`` (read
    as variables). All but the first are :data:`UNSAFE`.
    """
    if not key:
        return KeyProblem(UNSAFE, "is empty")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        return KeyProblem(TOO_LONG, f"is {size} bytes long; COS keys stop at {MAX_KEY_BYTES}")
    if key[0] in "/\\":
        return KeyProblem(UNSAFE, f"starts with {key[0]!r}, which COS refuses")
    if key.endswith("/"):
        return KeyProblem(UNSAFE, "ends with '/' (a folder marker, not an object)")
    if any(part in ("", ".", "..") for part in key.split("/")):
        return KeyProblem(
            UNSAFE,
            "has an empty, '.' or '..' path segment: whether MPS and COS keep it or normalise it "
            f"(to {normalize_key(key) or '/'!r}) is undocumented",
        )
    if output and ("{" in key or "}" in key):
        return KeyProblem(UNSAFE, "contains '{' or '}', which OutputPath reads as a variable")
    if any(c in _CONTROL for c in key):
        return KeyProblem(UNSAFE, "contains a control character")
    return None
