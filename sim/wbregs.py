"""Host accesses over Wishbone from cocotb: the NPU's registers on ``tb_wishbone``'s ``s_wb_*``.

One access at a time, as a CPU does. Signals are driven and sampled at falling clock edges:
what is set there is what the next rising edge samples, and the slave's registered outputs
(``ack``, ``stall``, ``dat_r``) read there are those of the cycle that edge ends. So the
sampling never races the simulator's update of the clock edge itself.

Pipelined (default): the request is presented until a cycle without STALL takes it, then STB
drops and CYC stays up until the ACK. Classic: STB stays up until the ACK.
"""

from __future__ import annotations

from cocotb.triggers import FallingEdge

__all__ = ["WishboneBusError", "wb_access", "wb_write", "wb_read"]


class WishboneBusError(RuntimeError):
    """The slave answered an access with ERR."""


async def wb_access(dut, word_index: int, value: int | None = None, *, prefix: str = "s_wb_",
                    classic: bool = False, max_cycles: int = 1000) -> int:
    """One Wishbone access on ``dut``'s ``<prefix>*`` signals; returns the data read.

    Parameters
    ----------
    dut
        The cocotb handle of the module with the bus (and ``clk``).
    word_index
        The word address (``adr``).
    value
        Data to write, or None for a read.
    prefix
        Signal name prefix of the bus.
    classic
        Classic cycle (STB held until ACK) instead of pipelined.
    max_cycles
        Cycles to wait for the ACK before giving up.

    Raises
    ------
    WishboneBusError
        If the slave answers with ERR.
    TimeoutError
        If no answer comes within ``max_cycles``.
    """
    def sig(name):
        return getattr(dut, prefix + name)

    edge = FallingEdge(dut.clk)
    await edge
    sig("adr").value = word_index
    sig("we").value = value is not None
    sig("dat_w").value = value or 0
    sig("sel").value = (1 << len(sig("sel"))) - 1
    sig("cti").value = 0
    sig("bte").value = 0
    sig("cyc").value = 1
    sig("stb").value = 1
    taken = False
    for _ in range(max_cycles):
        # This cycle's answer; the request is taken by the coming edge if STALL is low now.
        answered = bool(sig("ack").value) or bool(sig("err").value)
        error = bool(sig("err").value)
        data = int(sig("dat_r").value)
        taken = taken or classic or not sig("stall").value
        await edge
        if taken and not classic:
            sig("stb").value = 0
        if answered:
            sig("stb").value = 0
            sig("cyc").value = 0
            sig("we").value = 0
            if error:
                raise WishboneBusError(f"ERR on word {word_index:#x}")
            return data
    raise TimeoutError(f"no Wishbone answer for word {word_index:#x} in {max_cycles} cycles")


async def wb_write(dut, word_index: int, value: int, **kwargs) -> None:
    """Write ``value`` to register (word) ``word_index``; keywords as :func:`wb_access`."""
    await wb_access(dut, word_index, value, **kwargs)


async def wb_read(dut, word_index: int, **kwargs) -> int:
    """Read register (word) ``word_index``; keywords as :func:`wb_access`."""
    return await wb_access(dut, word_index, **kwargs)
