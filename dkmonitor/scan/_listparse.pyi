"""Types of the list reader's compiled plain-file loop (_listparse.c); see its docstring."""

from array import array

def files(batch: list[bytes], start: int, parent: bytes, consts: tuple[object, ...],
          acc: array[int]) -> int: ...

ACC_LEN: int
STATUS: int
FULL: int
NEW_DIRECTORY: int
NEW_OWNER: int
HIST: int
HIST_BYTES: int
GPFS: int
