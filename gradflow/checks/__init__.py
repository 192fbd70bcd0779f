"""Checkers that the exercises' test cells call: one module per chapter.

A checker raises ``AssertionError`` with a message that says, in a student's words,
what is wrong ("returned shape (3,) for an input of shape (3, 4)"), and accepts every
correct implementation (numpy or torch, loops or vectorised).
"""
