"""Checkers that the exercises' test cells call: one module per chapter.

A checker raises ``AssertionError`` with a message that says, in a student's words,
what is wrong ("returned shape (3,) for an input of shape (3, 4)"), and accepts every
correct implementation (numpy or torch, loops or vectorised).
"""

import math
import signal
import threading
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["as_array", "as_float64", "as_scalar", "call", "time_limit"]


@contextmanager
def time_limit(seconds, name):
    """Raise TimeoutError in the block after ``seconds`` (main thread on Unix only; else no limit)."""
    usable = seconds and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def stop(signum, frame):
        raise TimeoutError(f"{name} took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def call(fn, name, *args, hint="", timeout=None):
    """Call the student's function; turn any exception into an AssertionError that says what happened.

    ``hint`` is added to the message of a crash or a timeout; ``timeout`` (seconds) limits the run.
    """
    if not callable(fn):
        raise AssertionError(f"expected a function: {name} should be a function, "
                             f"but it is {type(fn).__name__} ({fn!r:.60})")
    try:
        with time_limit(timeout, name):
            return fn(*args)
    except NotImplementedError:
        raise AssertionError(f"{name} is not implemented yet (it raises NotImplementedError)") from None
    except TimeoutError:
        raise AssertionError(f"{name} took more than {timeout} s: {hint or 'is it doing too much?'}") from None
    except Exception as err:  # noqa: BLE001 - a student's bug must become a readable message, not a traceback
        raise AssertionError(f"{name} raised {type(err).__name__}: {err}. {hint}".rstrip(". ") + ".") from None


def as_float64(out, shape, what):
    """The student's output as a float64 tensor of ``shape``, or an AssertionError that says what is wrong.

    Accepts a torch tensor, a NumPy array, nested lists or a 1-tuple holding one of them.
    """
    if out is None:
        raise AssertionError(f"{what} returned None: did you forget `return`?")
    if isinstance(out, tuple) and len(out) == 1:
        out = out[0]
    try:
        if isinstance(out, torch.Tensor):
            t = out.detach().to(torch.float64)
        else:
            t = torch.as_tensor(np.asarray(out, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise AssertionError(f"{what} returned a {type(out).__name__}, not an array of numbers") from None
    if tuple(t.shape) != tuple(shape):
        raise AssertionError(f"{what} returned shape {tuple(t.shape)}; expected {tuple(shape)}")
    if not torch.isfinite(t).all():
        raise AssertionError(f"{what} returned NaN or infinite values")
    return t


def as_array(out, name):
    """A float64 NumPy array from a tensor, array, list or number; an AssertionError if impossible."""
    if out is None:
        raise AssertionError(f"{name} returned None: did you forget the `return` statement?")
    if isinstance(out, (str, bytes)):
        raise AssertionError(f"{name} returned the text {out!r:.40}, which is not an array of numbers "
                             "(text is not numbers)")
    try:
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().double().numpy()
        return np.asarray(out, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - any failure is the student's type, reported plainly
        raise AssertionError(f"{name} returned {type(out).__name__} ({out!r:.60}), which is not an array of "
                             f"numbers ({type(exc).__name__}: {exc})") from None


def as_scalar(out, name):
    """One finite float from a number or a one-element tensor/array; an AssertionError otherwise."""
    arr = as_array(out, name)
    if arr.size != 1:
        raise AssertionError(f"{name} returned {arr.size} numbers (shape {arr.shape}); expected a single number")
    value = float(arr.reshape(()))
    if not math.isfinite(value):
        raise AssertionError(f"{name} returned {value}, not a finite number")
    return value
