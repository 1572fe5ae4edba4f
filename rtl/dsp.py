"""Registered multiplies: operands registered, product registered (a product two cycles late).

Every multiplier of the array has this shape. Written as Amaranth registers around ``*``, yosys
maps the ``*`` to a hard multiplier block and keeps the three registers in the fabric: on the
iCE40, ``synth_ice40 -dsp`` then pulls them into the SB_MAC16, but ``synth_ecp5`` never packs
registers into a MULT18X18D. There the routing from the operand registers to the multiplier
blocks (in their own rows, far from the fabric) and back, in series with the multiplier itself,
was the NPU's critical path. With ``cell="MULT18X18D"`` the multiply is an ECP5 MULT18X18D
instance that uses its own input and output registers instead: the same two cycles, but each
cycle holds only one routing hop, and the multiplier sits between its registers.

Simulating such a design needs a model of the primitive: ``sim/MULT18X18D.v`` (the subset
instantiated here), which the Verilator build adds for configurations that use it.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed

from codesign.isa import MULT_CELLS

__all__ = ["check_mult_cell", "registered_product"]

# MULT18X18D operand and product widths.
_OPERAND, _PRODUCT = 18, 36


def check_mult_cell(cell: str) -> str:
    """``cell`` if it is one of :data:`codesign.isa.MULT_CELLS`, else a ValueError."""
    if cell not in MULT_CELLS:
        raise ValueError(f"mult_cell must be one of {MULT_CELLS}, not {cell!r}")
    return cell


def registered_product(m: Module, a, b, *, width: int, cell: str, name: str, a_reg=None):
    """Signed ``a · b`` (``width`` bits), registered twice: two cycles after ``a`` and ``b``.

    ``a_reg``, if given, is a register already holding ``a`` one cycle late (a systolic
    operand that also moves on to a neighbour); the inferred form multiplies it instead of
    registering ``a`` again.
    """
    if check_mult_cell(cell) == "inferred":
        product = Signal(signed(width), name=f"{name}_prod", reset_less=True)
        if a_reg is None:
            a_reg = Signal.like(a, name=f"{name}_a", reset_less=True)
            m.d.sync += a_reg.eq(a)
        b_reg = Signal.like(b, name=f"{name}_b", reset_less=True)
        m.d.sync += [b_reg.eq(b), product.eq(a_reg * b_reg)]
        return product
    for operand in (a, b):
        if not operand.shape().signed or operand.shape().width > _OPERAND:
            raise ValueError(f"{name}: MULT18X18D operands are signed and at most {_OPERAND} "
                             f"bits wide, not {operand.shape()}")
    if width > _PRODUCT:
        raise ValueError(f"{name}: MULT18X18D products are at most {_PRODUCT} bits wide")
    p = Signal(_PRODUCT, name=f"{name}_p")
    ports = {"i_CLK0": ClockSignal("sync"), "i_CE0": Const(1), "i_RST0": Const(0),
             "i_SIGNEDA": Const(1), "i_SIGNEDB": Const(1),
             "i_SOURCEA": Const(0), "i_SOURCEB": Const(0)}
    for bit in range(_OPERAND):
        # Operands sign-extended to the cell's 18 bits; the C input (pre-adder) is unused.
        ports[f"i_A{bit}"] = a[min(bit, len(a) - 1)]
        ports[f"i_B{bit}"] = b[min(bit, len(b) - 1)]
        ports[f"i_C{bit}"] = Const(0)
    for bit in range(_PRODUCT):
        ports[f"o_P{bit}"] = p[bit]
    params = {"p_REG_INPUTA_CLK": "CLK0", "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
              "p_REG_INPUTB_CLK": "CLK0", "p_REG_INPUTB_CE": "CE0", "p_REG_INPUTB_RST": "RST0",
              "p_REG_PIPELINE_CLK": "NONE",
              "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE0", "p_REG_OUTPUT_RST": "RST0",
              "p_GSR": "DISABLED", "p_RESETMODE": "SYNC", "p_MULT_BYPASS": "DISABLED",
              "p_SOURCEB_MODE": "B_INPUT"}
    m.submodules[f"{name}_mult"] = Instance("MULT18X18D", **params, **ports)
    # The output register is the cell's own: `product` is a wire onto it.
    product = Signal(signed(width), name=f"{name}_prod")
    m.d.comb += product.eq(p[:width].as_signed())
    return product
