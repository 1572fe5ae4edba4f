"""cocotb coroutines for the AXI4-Lite register port of ``tb_axi4`` (``s_axil_*``).

A handful of register accesses per run, so plain cycle-by-cycle driving (no cocotbext-axi).
Handshakes are sampled at the falling clock edge: on Verilator, cocotb reads signals after a
RisingEdge as they are *after* that edge, so a READY read there is the next cycle's, not the one
the edge sampled. Mid-cycle every VALID (driven here right after a rising edge) and every READY
(from the registers of :class:`codesign.rtl.axi.AxiLiteRegs`) is settled.
"""

from __future__ import annotations

from cocotb.triggers import FallingEdge, RisingEdge

__all__ = ["axil_init", "axil_write", "axil_read", "AxilError"]

#: RRESP / BRESP "OKAY".
_OKAY = 0


class AxilError(RuntimeError):
    """A register access answered with an error response."""


def axil_init(dut) -> None:
    """Drive every ``s_axil_*`` input of ``dut`` idle (call before reset)."""
    for ch in ("aw", "w", "ar"):
        getattr(dut, f"s_axil_{ch}valid").value = 0
    for name in ("awaddr", "awprot", "wdata", "araddr", "arprot", "bready", "rready"):
        getattr(dut, f"s_axil_{name}").value = 0
    dut.s_axil_wstrb.value = 0b1111


async def _transfer(dut, channels: dict[str, dict[str, int]]) -> None:
    """Offer ``{channel: {signal: value}}`` on each channel from the next cycle on and hold each
    until its handshake (channels complete independently: AW and W in any order)."""
    await RisingEdge(dut.clk)
    for ch, payload in channels.items():
        for name, value in payload.items():
            getattr(dut, f"s_axil_{ch}{name}").value = value
        getattr(dut, f"s_axil_{ch}valid").value = 1
    pending = set(channels)
    while pending:
        await FallingEdge(dut.clk)
        fired = {ch for ch in pending if getattr(dut, f"s_axil_{ch}ready").value}
        await RisingEdge(dut.clk)
        for ch in fired:
            getattr(dut, f"s_axil_{ch}valid").value = 0
        pending -= fired


async def _response(dut, ch: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """Take the next response on channel ``ch`` (``"b"`` or ``"r"``); returns its ``names``."""
    ready = getattr(dut, f"s_axil_{ch}ready")
    ready.value = 1
    while True:
        await FallingEdge(dut.clk)
        if getattr(dut, f"s_axil_{ch}valid").value:
            values = tuple(int(getattr(dut, f"s_axil_{ch}{n}").value) for n in names)
            await RisingEdge(dut.clk)
            ready.value = 0
            return values
        await RisingEdge(dut.clk)


async def axil_write(dut, word_index: int, value: int) -> None:
    """Write ``value`` to register ``word_index`` (byte offset ``4 * word_index``).

    Raises
    ------
    AxilError
        If the write is answered with anything but OKAY.
    """
    await _transfer(dut, {"aw": {"addr": 4 * word_index, "prot": 0},
                          "w": {"data": value & 0xFFFF_FFFF, "strb": 0b1111}})
    (resp,) = await _response(dut, "b", ("resp",))
    if resp != _OKAY:
        raise AxilError(f"write of register {word_index} answered BRESP {resp}")


async def axil_read(dut, word_index: int) -> int:
    """The value of register ``word_index`` (byte offset ``4 * word_index``).

    Raises
    ------
    AxilError
        If the read is answered with anything but OKAY.
    """
    await _transfer(dut, {"ar": {"addr": 4 * word_index, "prot": 0}})
    data, resp = await _response(dut, "r", ("data", "resp"))
    if resp != _OKAY:
        raise AxilError(f"read of register {word_index} answered RRESP {resp}")
    return data
