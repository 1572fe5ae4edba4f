"""The NPU core's memory interface: read and write bursts over valid/ready handshakes.

The core (:class:`codesign.rtl.top.NpuCore`) issues *commands* (a byte address and a beat
count) and moves *beats* (one bus word each) through the signals of :func:`mem_master`; a bus
wrapper turns them into AXI4, Wishbone or the native fixed-latency port (docs/bus.md). A transfer
happens in a cycle where ``valid`` and ``ready`` are both high; once ``valid`` is high the
payload holds until the transfer.

Rules the core keeps, which the wrappers may rely on:

* A burst has 1..256 beats and never crosses a 4 KiB boundary (:func:`burst_beats`).
* At most ``HwConfig.max_reads`` read beats are outstanding (accepted in a command, not yet
  taken): a wrapper that cannot hold back read data (Wishbone) needs no more buffer than that.
  Read bursts are at most half that long (:func:`read_burst_cap`).
* Read beats come back in command order; write beats go out in command order.
* The core only reads or only writes at any one time, and a STORE is complete (every command's
  ``wr_done``) before anything reads external memory again.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Value
from amaranth.lib.wiring import In, Out

from codesign.isa import HwConfig

__all__ = ["ADDR_BITS", "MAX_BURST", "PAGE_BYTES", "mem_master", "mem_slave", "mem_reader",
           "burst_beats", "read_burst_cap", "byte_address"]

#: Width of the byte addresses on the bus.
ADDR_BITS = 32
#: Longest burst (AXI4 INCR).
MAX_BURST = 256
#: Bursts never cross a boundary of this many bytes (AXI4's rule, kept for every bus).
PAGE_BYTES = 4096


def mem_master(config: HwConfig) -> dict:
    """The memory interface as seen from the core (``Out`` is driven by the core).

    ``rd_cmd_*`` / ``wr_cmd_*``: a burst of ``len + 1`` beats from byte address ``addr``
    (aligned to ``bus_bytes``). ``rd_*``: read beats in. ``wr_*``: write beats out (every byte
    written). ``wr_done``: a one-cycle pulse per completed write command.
    """
    data = 8 * config.bus_bytes
    return {
        "rd_cmd_valid": Out(1), "rd_cmd_ready": In(1),
        "rd_cmd_addr": Out(ADDR_BITS), "rd_cmd_len": Out(8),
        "rd_valid": In(1), "rd_ready": Out(1), "rd_data": In(data),
        "wr_cmd_valid": Out(1), "wr_cmd_ready": In(1),
        "wr_cmd_addr": Out(ADDR_BITS), "wr_cmd_len": Out(8),
        "wr_valid": Out(1), "wr_ready": In(1), "wr_data": Out(data),
        "wr_done": In(1),
    }


def mem_slave(config: HwConfig) -> dict:
    """:func:`mem_master` as seen from a bus wrapper (every direction flipped)."""
    return {name: (In if member.flow == Out else Out)(member.shape)
            for name, member in mem_master(config).items()}


def mem_reader(config: HwConfig) -> dict:
    """The read half of :func:`mem_master` (the controller's instruction fetch)."""
    return {name: member for name, member in mem_master(config).items()
            if name.startswith("rd_")}


def byte_address(config: HwConfig, base: Value, word: Value) -> Value:
    """The bus byte address of external word ``word``: ``base`` (4 KiB pages) plus the word's
    offset, modulo 2**32."""
    lg = config.bus_bytes.bit_length() - 1
    return ((base << 12) + (word << lg))[:ADDR_BITS]


def read_burst_cap(config: HwConfig) -> int:
    """The longest read burst: half of ``max_reads``, so that one burst's credits come back
    while the next burst is in flight (a burst may be issued only when every one of its beats
    has a credit; bursts of all ``max_reads`` beats would wait for a whole round trip each)."""
    return max(1, config.max_reads // 2)


def burst_beats(config: HwConfig, addr: Value, remaining: Value, cap: int) -> Value:
    """Beats of the next burst from byte address ``addr`` with ``remaining`` beats to move:
    at most ``cap`` (<= 256) and never past the 4 KiB page ``addr`` lies in."""
    lg = config.bus_bytes.bit_length() - 1
    to_page = (PAGE_BYTES - addr[:12]) >> lg        # 1 .. PAGE_BYTES / bus_bytes
    limit = min(cap, MAX_BURST, PAGE_BYTES >> lg)
    head = Mux(to_page < limit, to_page, limit)
    return Mux(remaining < head, remaining, head)
