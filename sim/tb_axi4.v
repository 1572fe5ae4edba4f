// Testbench top for Verilator + cocotb of the AXI4 NPU: npu_top (AXI4-Lite register slave
// s_axil_*, AXI4 master m_axi_*), the AXI4 memory model axi_mem and the protocol checker
// axi_check on the memory link.
//
// cocotb drives the register port (s_axil_*, see sim/axil.py) and reset, waits on `irq` or polls
// CTRL, and moves data in and out of the memory with the load/dump strobes (see axi_mem.v; its
// +mem_latency, +mem_stall, +mem_jitter, +mem_seed plusargs set the memory's behaviour).
// `mem_err` is the memory's error (an access outside it) or the checker's (a protocol violation).
// `beats_read` / `beats_written` count the memory's R / W transfers.
//
// The clock is generated here, as in tb_top.v. cocotb on Verilator reads signals after a
// RisingEdge as they are after that edge: sim/axil.py samples READY / VALID at the falling edge.
module tb_axi4 #(
    parameter HALF_PERIOD_NS = 5,
    parameter BUS_BYTES = 4,
    parameter DEPTH_LOG2 = 22,
    parameter ID_BITS = 4
) (
    output reg    clk,
    input         rst,
    output        irq,
    input  [4:0]  s_axil_awaddr,
    input  [2:0]  s_axil_awprot,
    input         s_axil_awvalid,
    output        s_axil_awready,
    input  [31:0] s_axil_wdata,
    input  [3:0]  s_axil_wstrb,
    input         s_axil_wvalid,
    output        s_axil_wready,
    output [1:0]  s_axil_bresp,
    output        s_axil_bvalid,
    input         s_axil_bready,
    input  [4:0]  s_axil_araddr,
    input  [2:0]  s_axil_arprot,
    input         s_axil_arvalid,
    output        s_axil_arready,
    output [31:0] s_axil_rdata,
    output [1:0]  s_axil_rresp,
    output        s_axil_rvalid,
    input         s_axil_rready,
    input         mem_load,
    input         mem_dump,
    input  [31:0] dump_lo,
    input  [31:0] dump_hi,
    output        mem_err,
    output [31:0] beats_read,
    output [31:0] beats_written
`ifdef CODESIGN_WAVES
    // Traced build only: its C++ main dumps waveforms while this is 1 (codesign.sim.runner).
    , input       waves_on
`endif
);
    localparam WIDTH = 8 * BUS_BYTES;

    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    wire [ID_BITS-1:0] awid, bid, arid, rid;
    wire [31:0]        awaddr, araddr;
    wire [7:0]         awlen, arlen;
    wire [2:0]         awsize, arsize, awprot, arprot;
    wire [1:0]         awburst, arburst, bresp, rresp;
    wire               awlock, arlock;
    wire [3:0]         awcache, arcache;
    wire               awvalid, awready, wvalid, wready, wlast, bvalid, bready;
    wire               arvalid, arready, rvalid, rready, rlast;
    wire [WIDTH-1:0]   wdata, rdata;
    wire [WIDTH/8-1:0] wstrb;
    wire               memory_err, check_err;

    assign mem_err = memory_err | check_err;

    npu_top npu (
        .clk(clk),
        .rst(rst),
        .irq(irq),
        .s_axil_awaddr(s_axil_awaddr), .s_axil_awprot(s_axil_awprot),
        .s_axil_awvalid(s_axil_awvalid), .s_axil_awready(s_axil_awready),
        .s_axil_wdata(s_axil_wdata), .s_axil_wstrb(s_axil_wstrb),
        .s_axil_wvalid(s_axil_wvalid), .s_axil_wready(s_axil_wready),
        .s_axil_bresp(s_axil_bresp), .s_axil_bvalid(s_axil_bvalid),
        .s_axil_bready(s_axil_bready),
        .s_axil_araddr(s_axil_araddr), .s_axil_arprot(s_axil_arprot),
        .s_axil_arvalid(s_axil_arvalid), .s_axil_arready(s_axil_arready),
        .s_axil_rdata(s_axil_rdata), .s_axil_rresp(s_axil_rresp),
        .s_axil_rvalid(s_axil_rvalid), .s_axil_rready(s_axil_rready),
        .m_axi_awid(awid), .m_axi_awaddr(awaddr), .m_axi_awlen(awlen), .m_axi_awsize(awsize),
        .m_axi_awburst(awburst), .m_axi_awlock(awlock), .m_axi_awcache(awcache),
        .m_axi_awprot(awprot), .m_axi_awvalid(awvalid), .m_axi_awready(awready),
        .m_axi_wdata(wdata), .m_axi_wstrb(wstrb), .m_axi_wlast(wlast),
        .m_axi_wvalid(wvalid), .m_axi_wready(wready),
        .m_axi_bid(bid), .m_axi_bresp(bresp), .m_axi_bvalid(bvalid), .m_axi_bready(bready),
        .m_axi_arid(arid), .m_axi_araddr(araddr), .m_axi_arlen(arlen), .m_axi_arsize(arsize),
        .m_axi_arburst(arburst), .m_axi_arlock(arlock), .m_axi_arcache(arcache),
        .m_axi_arprot(arprot), .m_axi_arvalid(arvalid), .m_axi_arready(arready),
        .m_axi_rid(rid), .m_axi_rdata(rdata), .m_axi_rresp(rresp), .m_axi_rlast(rlast),
        .m_axi_rvalid(rvalid), .m_axi_rready(rready)
    );

    axi_mem #(
        .WIDTH(WIDTH),
        .DEPTH_LOG2(DEPTH_LOG2),
        .ID_BITS(ID_BITS)
    ) ext (
        .clk(clk), .rst(rst),
        .s_axi_awid(awid), .s_axi_awaddr(awaddr), .s_axi_awlen(awlen), .s_axi_awsize(awsize),
        .s_axi_awburst(awburst), .s_axi_awvalid(awvalid), .s_axi_awready(awready),
        .s_axi_wdata(wdata), .s_axi_wstrb(wstrb), .s_axi_wlast(wlast), .s_axi_wvalid(wvalid),
        .s_axi_wready(wready),
        .s_axi_bid(bid), .s_axi_bresp(bresp), .s_axi_bvalid(bvalid), .s_axi_bready(bready),
        .s_axi_arid(arid), .s_axi_araddr(araddr), .s_axi_arlen(arlen), .s_axi_arsize(arsize),
        .s_axi_arburst(arburst), .s_axi_arvalid(arvalid), .s_axi_arready(arready),
        .s_axi_rid(rid), .s_axi_rdata(rdata), .s_axi_rresp(rresp), .s_axi_rlast(rlast),
        .s_axi_rvalid(rvalid), .s_axi_rready(rready),
        .load_req(mem_load), .dump_req(mem_dump), .dump_lo(dump_lo), .dump_hi(dump_hi),
        .err(memory_err), .beats_read(beats_read), .beats_written(beats_written)
    );

    axi_check #(
        .WIDTH(WIDTH),
        .ID_BITS(ID_BITS)
    ) check (
        .clk(clk), .rst(rst),
        .awid(awid), .awaddr(awaddr), .awlen(awlen), .awsize(awsize), .awburst(awburst),
        .awlock(awlock), .awcache(awcache), .awprot(awprot), .awvalid(awvalid),
        .awready(awready),
        .wdata(wdata), .wstrb(wstrb), .wlast(wlast), .wvalid(wvalid), .wready(wready),
        .bid(bid), .bresp(bresp), .bvalid(bvalid), .bready(bready),
        .arid(arid), .araddr(araddr), .arlen(arlen), .arsize(arsize), .arburst(arburst),
        .arlock(arlock), .arcache(arcache), .arprot(arprot), .arvalid(arvalid),
        .arready(arready),
        .rid(rid), .rdata(rdata), .rresp(rresp), .rlast(rlast), .rvalid(rvalid),
        .rready(rready),
        .err(check_err)
    );
endmodule
