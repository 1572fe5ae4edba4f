// Testbench top for Verilator + cocotb: the Wishbone NPU (npu_top with bus = "wishbone") + the
// Wishbone memory model + a protocol checker on each of its two buses.
//
// cocotb drives reset and the register bus s_wb_* (codesign.sim.wbregs), waits on irq, and
// moves data in and out of the memory with the load/dump strobes (see wb_mem.v; same host-side
// ports as tb_top.v). The memory's timing comes from its plusargs (+mem_latency, +mem_jitter,
// +mem_stall, +mem_seed). mem_err is the memory's out-of-range error or any protocol violation
// on either bus; m_check_fired / s_check_fired tell which rules were broken (wb_check.v). Only
// this module's signals are made public for VPI (the runner's .vlt).
//
// CLASSIC must match the NPU's HwConfig.wb_classic: it sets the cycle form of the memory and of
// both checkers (the host then uses classic cycles on s_wb_* too).
module tb_wishbone #(
    parameter HALF_PERIOD_NS = 5,
    parameter BUS_BYTES = 4,
    parameter DEPTH_LOG2 = 22,
    parameter CLASSIC = 0
) (
    output reg        clk,
    input             rst,
    output            irq,
    input  [29:0]     s_wb_adr,
    input  [31:0]     s_wb_dat_w,
    output [31:0]     s_wb_dat_r,
    input  [3:0]      s_wb_sel,
    input             s_wb_cyc,
    input             s_wb_stb,
    output            s_wb_ack,
    input             s_wb_we,
    input  [2:0]      s_wb_cti,
    input  [1:0]      s_wb_bte,
    output            s_wb_err,
    output            s_wb_stall,
    input             mem_load,
    input             mem_dump,
    input  [31:0]     dump_lo,
    input  [31:0]     dump_hi,
    output            mem_err,
    output [31:0]     beats_read,
    output [31:0]     beats_written,
    output [7:0]      m_check_fired,
    output [7:0]      s_check_fired
`ifdef CODESIGN_WAVES
    // Traced build only: its C++ main dumps waveforms while this is 1 (codesign.sim.runner).
    , input       waves_on
`endif
);
    localparam WIDTH = 8 * BUS_BYTES;
    // m_wb_adr is the byte address over BUS_BYTES.
    localparam ADDR_BITS = 32 - $clog2(BUS_BYTES);

    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    wire [ADDR_BITS-1:0] m_wb_adr;
    wire [WIDTH-1:0]     m_wb_dat_w;
    wire [WIDTH-1:0]     m_wb_dat_r;
    wire [BUS_BYTES-1:0] m_wb_sel;
    wire                 m_wb_cyc;
    wire                 m_wb_stb;
    wire                 m_wb_ack;
    wire                 m_wb_we;
    wire [2:0]           m_wb_cti;
    wire [1:0]           m_wb_bte;
    wire                 m_wb_err;
    wire                 m_wb_stall;
    wire                 ext_err;
    wire                 m_check_err;
    wire                 s_check_err;
    wire                 classic = CLASSIC != 0;

    npu_top npu (
        .clk(clk), .rst(rst), .irq(irq),
        .s_wb_adr(s_wb_adr), .s_wb_dat_w(s_wb_dat_w), .s_wb_dat_r(s_wb_dat_r),
        .s_wb_sel(s_wb_sel), .s_wb_cyc(s_wb_cyc), .s_wb_stb(s_wb_stb), .s_wb_ack(s_wb_ack),
        .s_wb_we(s_wb_we), .s_wb_cti(s_wb_cti), .s_wb_bte(s_wb_bte), .s_wb_err(s_wb_err),
        .s_wb_stall(s_wb_stall),
        .m_wb_adr(m_wb_adr), .m_wb_dat_w(m_wb_dat_w), .m_wb_dat_r(m_wb_dat_r),
        .m_wb_sel(m_wb_sel), .m_wb_cyc(m_wb_cyc), .m_wb_stb(m_wb_stb), .m_wb_ack(m_wb_ack),
        .m_wb_we(m_wb_we), .m_wb_cti(m_wb_cti), .m_wb_bte(m_wb_bte), .m_wb_err(m_wb_err),
        .m_wb_stall(m_wb_stall)
    );

    wb_mem #(.WIDTH(WIDTH), .DEPTH_LOG2(DEPTH_LOG2), .ADDR_BITS(ADDR_BITS)) ext (
        .clk(clk), .rst(rst), .classic(classic),
        .wb_adr(m_wb_adr), .wb_dat_w(m_wb_dat_w), .wb_dat_r(m_wb_dat_r), .wb_sel(m_wb_sel),
        .wb_cyc(m_wb_cyc), .wb_stb(m_wb_stb), .wb_ack(m_wb_ack), .wb_we(m_wb_we),
        .wb_cti(m_wb_cti), .wb_bte(m_wb_bte), .wb_err(m_wb_err), .wb_stall(m_wb_stall),
        .load_req(mem_load), .dump_req(mem_dump), .dump_lo(dump_lo), .dump_hi(dump_hi),
        .err(ext_err), .beats_read(beats_read), .beats_written(beats_written)
    );

    wb_check #(.ADDR_BITS(ADDR_BITS), .WIDTH(WIDTH), .NAME("m_wb")) m_check (
        .clk(clk), .rst(rst), .classic(classic), .adr(m_wb_adr), .dat_w(m_wb_dat_w),
        .sel(m_wb_sel), .cyc(m_wb_cyc), .stb(m_wb_stb), .we(m_wb_we), .ack(m_wb_ack),
        .wb_err(m_wb_err), .stall(m_wb_stall), .err(m_check_err),
        .fired(m_check_fired)
    );

    wb_check #(.ADDR_BITS(30), .WIDTH(32), .NAME("s_wb")) s_check (
        .clk(clk), .rst(rst), .classic(classic), .adr(s_wb_adr), .dat_w(s_wb_dat_w),
        .sel(s_wb_sel), .cyc(s_wb_cyc), .stb(s_wb_stb), .we(s_wb_we), .ack(s_wb_ack),
        .wb_err(s_wb_err), .stall(s_wb_stall), .err(s_check_err),
        .fired(s_check_fired)
    );

    assign mem_err = ext_err | m_check_err | s_check_err;
endmodule
