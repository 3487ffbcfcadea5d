"""How the ranks of a data-parallel job agree (``refnet.distributed``'s worlds): each
failure either reaches every rank together, or ends the whole job.

- ``on_every_rank(world, make)``: a start-up step on every rank; a failure on any rank
  is raised on every rank alike (``StartFailed``, naming the failing ranks), so no rank
  goes on to wait for the others.
- ``check_replicas(world, arrays, step)``: before a checkpoint is written, every rank's
  parameters and velocities are bit-identical (SHA-256 checksums compared), else
  ``DistributedError`` on every rank.
- ``abort_job(world, status, message)``: a failure of one rank alone: say what and where,
  and end every rank (``MPI_Abort``).

A Ctrl-C on any rank is agreed on at the next step's gradient reduction
(``GradientReducer.reduce``'s extras), so every rank stops after the same step; one
that strikes a rank outside the steps (evaluating, writing a checkpoint) stops it at
once and ends the job (``abort_job``, the interrupt's exit status), the last checkpoint
intact.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

from refnet.config import UsageError
from refnet.data.cli import UNEXPECTED, UserError
from refnet.distributed import DistributedError, Solo, checksum
from refnet.layers.backend import Array

if TYPE_CHECKING:
    from refnet.network import AlexNet

T = TypeVar("T")


class StartFailed(UsageError):
    """A data-parallel job could not start on some rank; raised on every rank alike."""


def on_every_rank(world: Solo, make: Callable[[], T], root_first: bool = False) -> T:
    """``make()`` on every rank (rank 0 before the others when ``root_first``); if it
    fails on any rank, every rank raises ``StartFailed`` with the failing ranks' own
    messages. A world of one just calls it."""
    if world.size == 1:
        return make()

    def attempt() -> tuple[T | None, str | None]:
        try:
            return make(), None
        except UserError as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001 - reported by every rank, below
            return None, f"unexpected {type(e).__name__}: {e}"

    made, error = None, None
    if root_first:
        if world.is_root:
            made, error = attempt()
        first = world.bcast(error)
        if first is not None:
            raise StartFailed(f"rank 0 ({world.host}): {first}")
    if not (root_first and world.is_root):
        made, error = attempt()
    failures = [f for f in world.allgather([world.rank, world.host, error]) if f[2]]
    if failures:
        if made is not None and hasattr(made, "close"):
            made.close()
        raise StartFailed("; ".join(f"rank {r} ({host}): {e}" for r, host, e in failures))
    return cast(T, made)  # made on every rank: no failure


def check_replicas(
    world: Solo, arrays: Mapping[str, Array], step: int, net: AlexNet | None = None
) -> None:
    """Every rank's ``arrays`` (parameters and velocities) are bit-identical;
    ``DistributedError`` on every rank, before anything is written, if not. Hybrid
    parallel (``net``, whose placement's ``sharded`` names are split over the ranks): those
    are left out of the checksums (each rank holds its own rows), and instead every
    rank's rows of each column's block must tile that block (``shard_rows``)."""
    if world.size == 1:
        return
    placement = None if net is None else net.placement
    sharded = set() if placement is None else placement.sharded
    if sharded and net is not None and placement is not None:  # (sharded: net given)
        held = world.allgather(shard_rows(net))
        for name in sorted(sharded):
            for c, (_, lo, hi) in enumerate(placement.blocks[name]):
                got = [tuple(rows[name][c]) for rows in held]
                ends = [lo] + [r1 for _, r1, _ in got]
                if any(r0 != end for (r0, _, _), end in zip(got, ends, strict=False)) or (
                    ends[-1] != hi or any(n != r1 - r0 for r0, r1, n in got)
                ):
                    raise DistributedError(
                        f"the ranks' rows of {name} (column {c}) at step {step} are "
                        f"{[g[:2] for g in got]} holding {[g[2] for g in got]} rows, which "
                        f"do not tile rows [{lo}, {hi}); no checkpoint was written"
                    )
    sums = world.allgather(checksum({k: v for k, v in arrays.items() if _base(k) not in sharded}))
    if len(set(sums)) > 1:
        differ = [r for r, s in enumerate(sums) if s != sums[0]]
        raise DistributedError(
            f"the replicas differ at step {step}: the "
            f"parameters of rank(s) {differ} are not rank 0's "
            "(checksums); no checkpoint was written"
        )


def shard_rows(net: AlexNet) -> dict[str, list[list[int]]]:
    """``{name: [[first row, last row + 1, rows held] per column]}`` of this rank's part
    of every name split over the ranks (JSON-able, for ``check_replicas``): the rows
    its placement gives it and the rows its arrays hold."""
    placement = net.placement
    return {
        name: [[r0, r1, int(net.params[c][name].shape[0])] for c, r0, r1 in rows]
        for name, rows in placement.rows.items()
        if name in placement.sharded
    }


def _base(key: str) -> str:
    """The parameter a checkpoint array belongs to: ``velocity/fc6.weight`` -> fc6.weight."""
    return key.split("/", 1)[1] if key.startswith("velocity/") else key


def abort_job(world: Solo, status: int, message: str) -> int:
    """One rank failed on its own: say so, naming the rank, and end every rank."""
    print(
        f"{message} [rank {world.rank} of {world.size}, pid {os.getpid()} on "
        f"{world.host}; ending the job]",
        file=sys.stderr,
        flush=True,
    )
    world.abort(status)
    return status


def rank_report(world: Solo, prog: str) -> Callable[[BaseException, int, str], None]:
    """How a rank reports the error that ends it (a ``data.cli.exit_status`` report):
    the failures every rank reaches together (a refused start, divergence, an agreed
    interrupt, replicas that differ) rank 0 alone says; anything that strikes one rank
    alone ends the whole job (``abort_job``) after that rank says what and where."""
    from refnet.stopping import Diverged, Interrupted

    def report(error: BaseException, status: int, line: str) -> None:
        # an interrupt the ranks agreed on (at a step's reduce) ends every rank alike; one
        # caught outside the steps (evaluating, saving) struck this rank alone
        alone = isinstance(error, Interrupted) and not error.args[1]
        if not alone and isinstance(error, (UsageError, DistributedError, Diverged, Interrupted)):
            if world.is_root:  # the same on every rank: rank 0 says it
                print(line, file=sys.stderr, flush=True)
            return
        if isinstance(error, KeyboardInterrupt):
            line = (
                f"{prog}: interrupted; files written before stay as they were "
                "(checkpoints are replaced atomically)"
            )
        elif status == UNEXPECTED:
            line += (
                " (the traceback above is for a bug report; checkpoints already written are intact)"
            )
        if world.size > 1 and (
            status == UNEXPECTED or alone or isinstance(error, (UserError, KeyboardInterrupt))
        ):
            abort_job(world, status, line)  # this rank alone: end the whole job
        else:
            print(line, file=sys.stderr, flush=True)

    return report
