"""The lanes of the audit log and a lane's head as a checkpoint signs it: (lane, lane_seq, seq, hash).
Pure Python (stdlib), no Django; appending to a lane on PostgreSQL is lab/audit/lanes.py.

Lanes. The log is a fixed number of hash chains ("lanes", 1..LANES), so that writers in different lanes do
not wait for each other's commits. A record names its lane and its position there (lane_seq: 1, 2, 3... with
no gap); its prev_hash is the hash of the record before it in the same lane (GENESIS_HASH for the lane's
first). seq is the global order the records are read in (a database sequence: strictly increasing, gaps
allowed, from a transaction that rolled back). A record written before lanes existed has neither field: it is
in lane 1 at position seq, and the lanes' records continue lane 1 after it. Within a lane seq increases with
lane_seq.
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.audit.canonical import GENESIS_HASH, encode_canonical

# The number of lanes; a record's lane is 1..LANES.
LANES = 16

# One lane's head as a checkpoint signs it: (lane, lane_seq, seq, hash).
LaneHead = tuple[int, int, int, str]


def lanes_from_json(value: object) -> tuple[LaneHead, ...]:
    """A checkpoint's lanes from their JSON form, a list of [lane, lane_seq, seq, hash]."""
    if type(value) is not list or not value:
        raise ValueError("checkpoint lanes must be a non-empty list")
    heads: list[LaneHead] = []
    for item in value:
        if (
            type(item) is not list
            or len(item) != 4
            or any(type(number) is not int for number in item[:3])
            or type(item[3]) is not str
        ):
            raise ValueError("each checkpoint lane is [lane, lane_seq, seq, hash]")
        heads.append((item[0], item[1], item[2], item[3]))
    return tuple(heads)


def lanes_to_json(lanes: Iterable[LaneHead]) -> str:
    """A checkpoint's lanes as canonical JSON (how the database stores them; "" for none)."""
    heads = [list(head) for head in lanes]
    return encode_canonical(heads) if heads else ""


def lanes_checkpoint_head(lanes: Iterable[LaneHead]) -> tuple[int, str]:
    """(seq, head_hash) a checkpoint of these lane heads names: the newest head, or 0 and GENESIS_HASH."""
    heads = list(lanes)
    if not heads:
        return 0, GENESIS_HASH
    newest = max(heads, key=lambda head: head[2])
    return newest[2], newest[3]
