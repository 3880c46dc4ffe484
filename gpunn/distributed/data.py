"""Data for ``gpunn train`` under several ranks: read once by rank 0, sent to the others.

Every rank needs every row: each draws the same global permutation and takes its piece
of each global batch, which can be any row. And the decisions taken while reading a
table (column types, categories, imputation, the target's classes), the validation split
and the standardisation statistics must be the same on every rank. So rank 0 reads and
parses the file once (with its notes printed once) and broadcasts the resulting arrays;
the others never open it (it need not even be on their nodes).
"""

from __future__ import annotations


def load_once(world, load):
    """``load()`` on rank 0, its result on every rank.

    Parameters
    ----------
    world : World
    load : callable
        Returns a picklable dataset (arrays of shape ``(N, features)`` and ``(N,)``).

    Raises
    ------
    SystemExit
        On ranks other than 0 when rank 0 failed to load (rank 0 raises the error
        itself, and reports it once).
    """
    if not world.distributed:
        return load()
    if world.rank == 0:
        try:
            data = load()
        except BaseException:
            world.broadcast(None)
            raise
        return world.broadcast(data)
    data = world.broadcast(None)
    if data is None:
        raise SystemExit(2)
    return data
