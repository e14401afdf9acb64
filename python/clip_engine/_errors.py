"""The exceptions clip_engine raises. Every one is a clip_engine.Error; each also derives from
the built-in exception a caller would catch for it."""
import os


class Error(Exception):
    """Anything the engine refuses or fails at (a bad checkpoint, a bad input, no memory)."""


class NotFoundError(Error, FileNotFoundError):
    """A model path (or an input file) that does not exist."""


class InvalidInputError(Error, ValueError):
    """An argument of the wrong kind, dtype or shape."""


class OutOfMemoryError(Error, MemoryError):
    """An allocation failed: host memory, GPU memory, or the model's memory limit."""


class InputError(InvalidInputError):
    """One input of a list failed (it could not be read, decoded or tokenized).

    ``index`` is its position in the list, ``reason`` the engine's message.
    """

    def __init__(self, index, reason):
        super().__init__(f"input {index}: {reason}")
        self.index = index
        self.reason = reason


class InputNotFoundError(InputError, NotFoundError):
    """One input of a list names a file that does not exist."""


def input_error(index, reason):
    """The InputError for input `index` (an InputNotFoundError when its file is missing)."""
    if reason.endswith(": cannot open file"):
        path = reason[: -len(": cannot open file")]
        if not os.path.exists(path):
            return InputNotFoundError(index, reason)
    return InputError(index, reason)
