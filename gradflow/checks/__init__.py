"""Checkers that the exercises' test cells call: one module per chapter.

A checker raises ``AssertionError`` with a message that says, in a student's words,
what is wrong ("returned shape (3,) for an input of shape (3, 4)"), and accepts every
correct implementation (numpy or torch, loops or vectorised).
"""

import numpy as np
import torch

__all__ = ["as_float64"]


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
