"""The Verilator lint waivers that ``generate`` writes beside the NPU's Verilog.

``verilator --lint-only -Wall npu_lint.vlt npu.v`` reports nothing: the waivers switch off, for
``npu.v`` only, the rule classes that Amaranth's Verilog (RTLIL written out by yosys) produces by
construction, each with the reason in the file. The width rules are waived only in the forms
yosys writes (an operand narrower or wider than its operator, a variable part-select written as a
shift); any other width mismatch, and every other rule, is still reported.
"""

from __future__ import annotations

__all__ = ["WAIVERS", "WAIVERS_TEXT"]

#: The waiver file's name in a design directory.
WAIVERS = "npu_lint.vlt"

WAIVERS_TEXT = """\
`verilator_config
// Lint waivers for the Verilog that codesign generates (npu.v), a Verilator configuration file.
// Lint with: `verilator --lint-only -Wall npu_lint.vlt npu.v`.
// Each rule is waived for npu.v only, because Amaranth's Verilog (its RTLIL written out by
// yosys) breaks it by construction, not because of a defect of the design.

// Amaranth gives every register its reset value as a declaration initializer
// (`reg [7:0] x = 8'h00;`) and assigns it again in the clocked process.
lint_off -rule PROCASSINIT -file "*npu.v"

// Every signal and interface member keeps its name, whether or not anything reads it: unused
// outputs of a block, the `name$N` aliases yosys keeps of ports, the bits of a wide
// intermediate value of which only a slice is used, and the address bits a register slave does
// not decode.
lint_off -rule UNUSEDSIGNAL -file "*npu.v"

// yosys writes a `case` with its default as an assignment before it, not as a `default:` arm.
lint_off -rule CASEINCOMPLETE -file "*npu.v"

// One file holds npu_top and every block under it.
lint_off -rule DECLFILENAME -file "*npu.v"

// yosys writes each operator with its operands at their own widths, relying on Verilog's
// context widening (Amaranth's width rules are already applied) ...
lint_off -rule WIDTHEXPAND -file "*npu.v" -match "Operator *"
// ... a test for zero of a multi-bit value as `!value` ...
lint_off -rule WIDTHTRUNC -file "*npu.v" -match "Logical operator LOGNOT expects 1 bit*"
// ... and a part-select at a variable offset (Amaranth's bit_select, word_select, array
// indexing) as a right shift of which the assignment keeps the low bits.
lint_off -rule WIDTHTRUNC -file "*npu.v" -match "Operator ASSIGNW expects * bits on the Assign \
RHS, but Assign RHS's SHIFTR generates * bits."

// Designs with ECP5 multiplier cells (`MULT18X18D` in npu.v) also need the cell's model on the
// command line: codesign/sim/MULT18X18D.v in the installed package. It declares every pin and
// parameter of the real cell, so that npu.v's instances elaborate, and models those the NPU
// uses; its registers start at zero as the cell's do.
lint_off -rule UNUSEDSIGNAL -file "*MULT18X18D.v"
lint_off -rule UNUSEDPARAM -file "*MULT18X18D.v"
lint_off -rule PROCASSINIT -file "*MULT18X18D.v"
"""
