// Testbench top for Verilator + cocotb: npu_top + the external memory model.
//
// cocotb drives the CSR bus and reset, waits on `done`, and moves data in and out of the external
// memory with the load/dump strobes (see ext_mem.v). Only this module's signals are made public
// for VPI (the runner's tb.vlt), so Verilator optimises the NPU itself freely.
//
// The clock is generated here (Verilator --timing) rather than by cocotb's Clock: measured 1.7x
// more simulated cycles per second, since no VPI callback runs per clock edge.
module tb_top #(
    parameter HALF_PERIOD_NS = 5,
    parameter BUS_BYTES = 4,
    parameter DEPTH_LOG2 = 22,
    parameter ADDR_BITS = 28
) (
    output reg    clk,
    input         rst,
    input  [2:0]  csr_addr,
    input         csr_we,
    input  [31:0] csr_wdata,
    output [31:0] csr_rdata,
    output        done,
    output        irq,
    input         mem_load,
    input         mem_dump,
    input  [31:0] dump_lo,
    input  [31:0] dump_hi,
    output        mem_err
`ifdef CODESIGN_WAVES
    // Traced build only: its C++ main dumps waveforms while this is 1 (codesign.sim.runner).
    , input       waves_on
`endif
);
    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    wire [ADDR_BITS-1:0]   mem_addr;
    wire                   mem_re;
    wire [8*BUS_BYTES-1:0] mem_rdata;
    wire                   mem_we;
    wire [8*BUS_BYTES-1:0] mem_wdata;

    npu_top npu (
        .clk(clk),
        .rst(rst),
        .csr_addr(csr_addr),
        .csr_we(csr_we),
        .csr_wdata(csr_wdata),
        .csr_rdata(csr_rdata),
        .done(done),
        .irq(irq),
        .mem_addr(mem_addr),
        .mem_re(mem_re),
        .mem_rdata(mem_rdata),
        .mem_we(mem_we),
        .mem_wdata(mem_wdata)
    );

    ext_mem #(
        .WIDTH(8 * BUS_BYTES),
        .DEPTH_LOG2(DEPTH_LOG2),
        .ADDR_BITS(ADDR_BITS)
    ) ext (
        .clk(clk),
        .addr(mem_addr),
        .re(mem_re),
        .rdata(mem_rdata),
        .we(mem_we),
        .wdata(mem_wdata),
        .load_req(mem_load),
        .dump_req(mem_dump),
        .dump_lo(dump_lo),
        .dump_hi(dump_hi),
        .err(mem_err)
    );
endmodule
