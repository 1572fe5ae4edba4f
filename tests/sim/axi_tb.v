// Test benches of sim/axi_mem.v and sim/axi_check.v (tests/sim/test_axi_mem.py).
//
// axi_mem_tb:   cocotb (cocotbext-axi's AxiMaster) drives s_axi_* into axi_mem, watched by
//               axi_check. The clock is generated here, as in sim/tb_top.v.
// axi_rogue_tb: axi_rogue_master (below), legal or broken by +rogue=N, drives axi_mem, watched by
//               axi_check: the checker must stay silent on mode 0 and fire on every other one.
//               Modes 6..8 break the slave's side instead, in what the checker sees: an R beat
//               (6) or a B response (7) out of nowhere in cycle 3, RLAST inverted (8).

module axi_mem_tb #(
    parameter HALF_PERIOD_NS = 5,
    parameter WIDTH = 32,
    parameter ID_BITS = 4,
    parameter DEPTH_LOG2 = 12
) (
    output reg               clk,
    input                    rst,
    input  [ID_BITS-1:0]     s_axi_awid,
    input  [31:0]            s_axi_awaddr,
    input  [7:0]             s_axi_awlen,
    input  [2:0]             s_axi_awsize,
    input  [1:0]             s_axi_awburst,
    input                    s_axi_awlock,
    input  [3:0]             s_axi_awcache,
    input  [2:0]             s_axi_awprot,
    input                    s_axi_awvalid,
    output reg                s_axi_awready,
    input  [WIDTH-1:0]       s_axi_wdata,
    input  [WIDTH/8-1:0]     s_axi_wstrb,
    input                    s_axi_wlast,
    input                    s_axi_wvalid,
    output reg                s_axi_wready,
    output reg [ID_BITS-1:0]     s_axi_bid,
    output reg [1:0]             s_axi_bresp,
    output reg                s_axi_bvalid,
    input                    s_axi_bready,
    input  [ID_BITS-1:0]     s_axi_arid,
    input  [31:0]            s_axi_araddr,
    input  [7:0]             s_axi_arlen,
    input  [2:0]             s_axi_arsize,
    input  [1:0]             s_axi_arburst,
    input                    s_axi_arlock,
    input  [3:0]             s_axi_arcache,
    input  [2:0]             s_axi_arprot,
    input                    s_axi_arvalid,
    output reg                s_axi_arready,
    output reg [ID_BITS-1:0]     s_axi_rid,
    output reg [WIDTH-1:0]       s_axi_rdata,
    output reg [1:0]             s_axi_rresp,
    output reg                s_axi_rlast,
    output reg                s_axi_rvalid,
    input                    s_axi_rready,
    input                    mem_load,
    input                    mem_dump,
    input  [31:0]            dump_lo,
    input  [31:0]            dump_hi,
    output                   mem_err,
    output                   check_err,
    output [31:0]            beats_read,
    output [31:0]            beats_written
);
    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    // What cocotb sees of the slave's outputs. Under Verilator, cocotb reads signals after a
    // RisingEdge as they are AFTER the edge; cocotbext-axi takes them for the values the edge
    // sampled (handshakes, data). So cocotb gets a copy registered at the same edge: after the
    // edge it holds exactly what the memory drove before it. The checker watches the real ones.
    wire s_axi_awready_i;
    wire s_axi_wready_i;
    wire [ID_BITS-1:0] s_axi_bid_i;
    wire [1:0] s_axi_bresp_i;
    wire s_axi_bvalid_i;
    wire s_axi_arready_i;
    wire [ID_BITS-1:0] s_axi_rid_i;
    wire [WIDTH-1:0] s_axi_rdata_i;
    wire [1:0] s_axi_rresp_i;
    wire s_axi_rlast_i;
    wire s_axi_rvalid_i;
    always @(posedge clk) begin
        s_axi_awready <= s_axi_awready_i;
        s_axi_wready <= s_axi_wready_i;
        s_axi_bid <= s_axi_bid_i;
        s_axi_bresp <= s_axi_bresp_i;
        s_axi_bvalid <= s_axi_bvalid_i;
        s_axi_arready <= s_axi_arready_i;
        s_axi_rid <= s_axi_rid_i;
        s_axi_rdata <= s_axi_rdata_i;
        s_axi_rresp <= s_axi_rresp_i;
        s_axi_rlast <= s_axi_rlast_i;
        s_axi_rvalid <= s_axi_rvalid_i;
    end

    axi_mem #(.WIDTH(WIDTH), .DEPTH_LOG2(DEPTH_LOG2), .ID_BITS(ID_BITS)) mem (
        .clk(clk), .rst(rst),
        .s_axi_awid(s_axi_awid), .s_axi_awaddr(s_axi_awaddr), .s_axi_awlen(s_axi_awlen),
        .s_axi_awsize(s_axi_awsize), .s_axi_awburst(s_axi_awburst),
        .s_axi_awvalid(s_axi_awvalid), .s_axi_awready(s_axi_awready_i),
        .s_axi_wdata(s_axi_wdata), .s_axi_wstrb(s_axi_wstrb), .s_axi_wlast(s_axi_wlast),
        .s_axi_wvalid(s_axi_wvalid), .s_axi_wready(s_axi_wready_i),
        .s_axi_bid(s_axi_bid_i), .s_axi_bresp(s_axi_bresp_i), .s_axi_bvalid(s_axi_bvalid_i),
        .s_axi_bready(s_axi_bready),
        .s_axi_arid(s_axi_arid), .s_axi_araddr(s_axi_araddr), .s_axi_arlen(s_axi_arlen),
        .s_axi_arsize(s_axi_arsize), .s_axi_arburst(s_axi_arburst),
        .s_axi_arvalid(s_axi_arvalid), .s_axi_arready(s_axi_arready_i),
        .s_axi_rid(s_axi_rid_i), .s_axi_rdata(s_axi_rdata_i), .s_axi_rresp(s_axi_rresp_i),
        .s_axi_rlast(s_axi_rlast_i), .s_axi_rvalid(s_axi_rvalid_i), .s_axi_rready(s_axi_rready),
        .load_req(mem_load), .dump_req(mem_dump), .dump_lo(dump_lo), .dump_hi(dump_hi),
        .err(mem_err), .beats_read(beats_read), .beats_written(beats_written)
    );

    axi_check #(.WIDTH(WIDTH), .ID_BITS(ID_BITS)) check (
        .clk(clk), .rst(rst),
        .awid(s_axi_awid), .awaddr(s_axi_awaddr), .awlen(s_axi_awlen), .awsize(s_axi_awsize),
        .awburst(s_axi_awburst), .awlock(s_axi_awlock), .awcache(s_axi_awcache),
        .awprot(s_axi_awprot), .awvalid(s_axi_awvalid), .awready(s_axi_awready_i),
        .wdata(s_axi_wdata), .wstrb(s_axi_wstrb), .wlast(s_axi_wlast), .wvalid(s_axi_wvalid),
        .wready(s_axi_wready_i),
        .bid(s_axi_bid_i), .bresp(s_axi_bresp_i), .bvalid(s_axi_bvalid_i), .bready(s_axi_bready),
        .arid(s_axi_arid), .araddr(s_axi_araddr), .arlen(s_axi_arlen), .arsize(s_axi_arsize),
        .arburst(s_axi_arburst), .arlock(s_axi_arlock), .arcache(s_axi_arcache),
        .arprot(s_axi_arprot), .arvalid(s_axi_arvalid), .arready(s_axi_arready_i),
        .rid(s_axi_rid_i), .rdata(s_axi_rdata_i), .rresp(s_axi_rresp_i), .rlast(s_axi_rlast_i),
        .rvalid(s_axi_rvalid_i), .rready(s_axi_rready),
        .err(check_err)
    );
endmodule


// A 32-bit AXI4 master that does one short write and one short read, legally (+rogue=0) or with
// one deliberate violation:
//   1  ARVALID raised for one cycle only, whether or not ARREADY came (repeated);
//   2  ARADDR changed while ARVALID & !ARREADY;
//   3  WLAST on the third beat of a four-beat burst;
//   4  an INCR read burst crossing 4 KiB;
//   5  a FIXED read burst of 17 beats (FIXED and WRAP bursts have at most 16).
module axi_rogue_master (
    input             clk,
    input             rst,
    output reg        awvalid,
    input             awready,
    output reg [31:0] awaddr,
    output reg [7:0]  awlen,
    output reg        wvalid,
    input             wready,
    output reg [31:0] wdata,
    output reg        wlast,
    input             bvalid,
    output reg        arvalid,
    input             arready,
    output reg [31:0] araddr,
    output reg [7:0]  arlen,
    output reg [1:0]  arburst
);
    reg [31:0] mode;
    reg [7:0]  beat;
    reg        wrote;
    reg        read_issued;

    initial if (!$value$plusargs("rogue=%d", mode)) mode = 0;

    always @(posedge clk) begin
        if (rst) begin
            awvalid <= 1'b0; wvalid <= 1'b0; arvalid <= 1'b0;
            beat <= 0; wrote <= 1'b0; read_issued <= 1'b0;
            awaddr <= 32'h100; awlen <= 8'd3;
            wdata <= 32'h0; wlast <= 1'b0;
            araddr <= mode == 4 ? 32'hff0 : 32'h100;
            arlen <= mode == 4 ? 8'd7 : mode == 5 ? 8'd16 : 8'd3;
            arburst <= mode == 5 ? 2'b00 : 2'b01;
        end else begin
            // Write: AW and the W beats offered together from the first cycle.
            if (!wrote && !awvalid && !wvalid && beat == 0 && mode != 1 && mode != 2) begin
                awvalid <= 1'b1;
                wvalid <= 1'b1;
                wlast <= 1'b0;
            end
            if (awvalid && awready) awvalid <= 1'b0;
            if (wvalid && wready) begin
                beat <= beat + 1;
                wdata <= wdata + 1;
                wlast <= mode == 3 ? beat + 1 == 2 : beat + 2 == 8'd4;
                if (beat + 1 == 8'd4) begin
                    wvalid <= 1'b0;
                    wlast <= 1'b0;
                    wrote <= 1'b1;
                end
            end
            // Read: after the write's response (modes 0, 3, 4, 5) or at once (modes 1, 2).
            case (mode)
                1: arvalid <= !arvalid;
                2: begin
                    arvalid <= 1'b1;
                    if (arvalid && !arready) araddr <= araddr + 4;
                end
                default: begin
                    if (bvalid && !read_issued) begin
                        arvalid <= 1'b1;
                        read_issued <= 1'b1;
                    end
                    if (arvalid && arready) arvalid <= 1'b0;
                end
            endcase
        end
    end
endmodule


module axi_rogue_tb #(
    parameter HALF_PERIOD_NS = 5
) (
    output reg clk,
    input      rst,
    output     mem_err,
    output     check_err
);
    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    wire        awvalid, awready, wvalid, wready, wlast, bvalid, arvalid, arready;
    wire [31:0] awaddr, wdata, araddr;
    wire [7:0]  awlen, arlen;
    wire [1:0]  arburst;
    wire [3:0]  bid, rid;
    wire [1:0]  bresp, rresp;
    wire [31:0] rdata;
    wire        rlast, rvalid;
    wire [31:0] beats_read, beats_written;
    reg  [31:0] mode;
    reg  [7:0]  cycle;
    wire        forged = cycle == 8'd3;
    wire        seen_rvalid = rvalid | (mode == 6 && forged);
    wire        seen_bvalid = bvalid | (mode == 7 && forged);
    wire        seen_rlast = mode == 8 ? !rlast : rlast;

    initial if (!$value$plusargs("rogue=%d", mode)) mode = 0;
    always @(posedge clk) cycle <= rst ? 8'd0 : cycle + {7'd0, cycle != 8'hff};

    axi_rogue_master master (
        .clk(clk), .rst(rst),
        .awvalid(awvalid), .awready(awready), .awaddr(awaddr), .awlen(awlen),
        .wvalid(wvalid), .wready(wready), .wdata(wdata), .wlast(wlast), .bvalid(bvalid),
        .arvalid(arvalid), .arready(arready), .araddr(araddr), .arlen(arlen),
        .arburst(arburst)
    );

    axi_mem #(.WIDTH(32), .DEPTH_LOG2(12), .ID_BITS(4)) mem (
        .clk(clk), .rst(rst),
        .s_axi_awid(4'd0), .s_axi_awaddr(awaddr), .s_axi_awlen(awlen), .s_axi_awsize(3'd2),
        .s_axi_awburst(2'b01), .s_axi_awvalid(awvalid), .s_axi_awready(awready),
        .s_axi_wdata(wdata), .s_axi_wstrb(4'hf), .s_axi_wlast(wlast), .s_axi_wvalid(wvalid),
        .s_axi_wready(wready),
        .s_axi_bid(bid), .s_axi_bresp(bresp), .s_axi_bvalid(bvalid), .s_axi_bready(1'b1),
        .s_axi_arid(4'd0), .s_axi_araddr(araddr), .s_axi_arlen(arlen), .s_axi_arsize(3'd2),
        .s_axi_arburst(arburst), .s_axi_arvalid(arvalid), .s_axi_arready(arready),
        .s_axi_rid(rid), .s_axi_rdata(rdata), .s_axi_rresp(rresp), .s_axi_rlast(rlast),
        .s_axi_rvalid(rvalid), .s_axi_rready(1'b1),
        .load_req(1'b0), .dump_req(1'b0), .dump_lo(32'd0), .dump_hi(32'd0),
        .err(mem_err), .beats_read(beats_read), .beats_written(beats_written)
    );

    axi_check #(.WIDTH(32), .ID_BITS(4)) check (
        .clk(clk), .rst(rst),
        .awid(4'd0), .awaddr(awaddr), .awlen(awlen), .awsize(3'd2), .awburst(2'b01),
        .awlock(1'b0), .awcache(4'd0), .awprot(3'd0), .awvalid(awvalid), .awready(awready),
        .wdata(wdata), .wstrb(4'hf), .wlast(wlast), .wvalid(wvalid), .wready(wready),
        .bid(bid), .bresp(bresp), .bvalid(seen_bvalid), .bready(1'b1),
        .arid(4'd0), .araddr(araddr), .arlen(arlen), .arsize(3'd2), .arburst(arburst),
        .arlock(1'b0), .arcache(4'd0), .arprot(3'd0), .arvalid(arvalid), .arready(arready),
        .rid(rid), .rdata(rdata), .rresp(rresp), .rlast(seen_rlast), .rvalid(seen_rvalid),
        .rready(1'b1),
        .err(check_err)
    );
endmodule
