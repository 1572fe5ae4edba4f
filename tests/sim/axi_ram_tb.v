// A test bench for a cocotbext-axi memory model (AxiRam) on npu_top's AXI4 master
// (tests/sim/test_tb_axi4.py), with axi_check on the link.
//
// cocotb on Verilator reads signals after a RisingEdge as they are AFTER the edge, and
// cocotbext-axi judges handshakes and takes payloads from what it reads there. So cocotb sees
// the master's outputs (m_axi_*: VALIDs, payloads, READYs) through registers loaded at the same
// edge: after each edge they hold what the master drove before it, the values the edge sampled.
// What cocotb drives (the slave's side) goes to npu_top directly.
module axi_ram_tb #(
    parameter HALF_PERIOD_NS = 5,
    parameter BUS_BYTES = 4,
    parameter ID_BITS = 4
) (
    output reg    clk,
    input         rst,
    output        irq,
    input  [4:0] s_axil_awaddr,
    input  [2:0] s_axil_awprot,
    input  s_axil_awvalid,
    input  [31:0] s_axil_wdata,
    input  [3:0] s_axil_wstrb,
    input  s_axil_wvalid,
    input  s_axil_bready,
    input  [4:0] s_axil_araddr,
    input  [2:0] s_axil_arprot,
    input  s_axil_arvalid,
    input  s_axil_rready,
    output s_axil_awready,
    output s_axil_wready,
    output [1:0] s_axil_bresp,
    output s_axil_bvalid,
    output s_axil_arready,
    output [31:0] s_axil_rdata,
    output [1:0] s_axil_rresp,
    output s_axil_rvalid,
    input  m_axi_awready,
    input  m_axi_wready,
    input  [ID_BITS-1:0] m_axi_bid,
    input  [1:0] m_axi_bresp,
    input  m_axi_bvalid,
    input  m_axi_arready,
    input  [ID_BITS-1:0] m_axi_rid,
    input  [WIDTH-1:0] m_axi_rdata,
    input  [1:0] m_axi_rresp,
    input  m_axi_rlast,
    input  m_axi_rvalid,
    output reg [ID_BITS-1:0] m_axi_awid,
    output reg [31:0] m_axi_awaddr,
    output reg [7:0] m_axi_awlen,
    output reg [2:0] m_axi_awsize,
    output reg [1:0] m_axi_awburst,
    output reg m_axi_awlock,
    output reg [3:0] m_axi_awcache,
    output reg [2:0] m_axi_awprot,
    output reg m_axi_awvalid,
    output reg [WIDTH-1:0] m_axi_wdata,
    output reg [WIDTH/8-1:0] m_axi_wstrb,
    output reg m_axi_wlast,
    output reg m_axi_wvalid,
    output reg m_axi_bready,
    output reg [ID_BITS-1:0] m_axi_arid,
    output reg [31:0] m_axi_araddr,
    output reg [7:0] m_axi_arlen,
    output reg [2:0] m_axi_arsize,
    output reg [1:0] m_axi_arburst,
    output reg m_axi_arlock,
    output reg [3:0] m_axi_arcache,
    output reg [2:0] m_axi_arprot,
    output reg m_axi_arvalid,
    output reg m_axi_rready,
    output        check_err
);
    localparam WIDTH = 8 * BUS_BYTES;

    initial clk = 1'b0;
    always #(HALF_PERIOD_NS) clk = ~clk;

    wire [ID_BITS-1:0] awid;
    wire [31:0] awaddr;
    wire [7:0] awlen;
    wire [2:0] awsize;
    wire [1:0] awburst;
    wire awlock;
    wire [3:0] awcache;
    wire [2:0] awprot;
    wire awvalid;
    wire [WIDTH-1:0] wdata;
    wire [WIDTH/8-1:0] wstrb;
    wire wlast;
    wire wvalid;
    wire bready;
    wire [ID_BITS-1:0] arid;
    wire [31:0] araddr;
    wire [7:0] arlen;
    wire [2:0] arsize;
    wire [1:0] arburst;
    wire arlock;
    wire [3:0] arcache;
    wire [2:0] arprot;
    wire arvalid;
    wire rready;

    always @(posedge clk) begin
        m_axi_awid <= awid;
        m_axi_awaddr <= awaddr;
        m_axi_awlen <= awlen;
        m_axi_awsize <= awsize;
        m_axi_awburst <= awburst;
        m_axi_awlock <= awlock;
        m_axi_awcache <= awcache;
        m_axi_awprot <= awprot;
        m_axi_awvalid <= awvalid;
        m_axi_wdata <= wdata;
        m_axi_wstrb <= wstrb;
        m_axi_wlast <= wlast;
        m_axi_wvalid <= wvalid;
        m_axi_bready <= bready;
        m_axi_arid <= arid;
        m_axi_araddr <= araddr;
        m_axi_arlen <= arlen;
        m_axi_arsize <= arsize;
        m_axi_arburst <= arburst;
        m_axi_arlock <= arlock;
        m_axi_arcache <= arcache;
        m_axi_arprot <= arprot;
        m_axi_arvalid <= arvalid;
        m_axi_rready <= rready;
    end

    npu_top npu (
        .clk(clk), .rst(rst), .irq(irq),
        .s_axil_awaddr(s_axil_awaddr),
        .s_axil_awprot(s_axil_awprot),
        .s_axil_awvalid(s_axil_awvalid),
        .s_axil_wdata(s_axil_wdata),
        .s_axil_wstrb(s_axil_wstrb),
        .s_axil_wvalid(s_axil_wvalid),
        .s_axil_bready(s_axil_bready),
        .s_axil_araddr(s_axil_araddr),
        .s_axil_arprot(s_axil_arprot),
        .s_axil_arvalid(s_axil_arvalid),
        .s_axil_rready(s_axil_rready),
        .s_axil_awready(s_axil_awready),
        .s_axil_wready(s_axil_wready),
        .s_axil_bresp(s_axil_bresp),
        .s_axil_bvalid(s_axil_bvalid),
        .s_axil_arready(s_axil_arready),
        .s_axil_rdata(s_axil_rdata),
        .s_axil_rresp(s_axil_rresp),
        .s_axil_rvalid(s_axil_rvalid),
        .m_axi_awid(awid),
        .m_axi_awaddr(awaddr),
        .m_axi_awlen(awlen),
        .m_axi_awsize(awsize),
        .m_axi_awburst(awburst),
        .m_axi_awlock(awlock),
        .m_axi_awcache(awcache),
        .m_axi_awprot(awprot),
        .m_axi_awvalid(awvalid),
        .m_axi_wdata(wdata),
        .m_axi_wstrb(wstrb),
        .m_axi_wlast(wlast),
        .m_axi_wvalid(wvalid),
        .m_axi_bready(bready),
        .m_axi_arid(arid),
        .m_axi_araddr(araddr),
        .m_axi_arlen(arlen),
        .m_axi_arsize(arsize),
        .m_axi_arburst(arburst),
        .m_axi_arlock(arlock),
        .m_axi_arcache(arcache),
        .m_axi_arprot(arprot),
        .m_axi_arvalid(arvalid),
        .m_axi_rready(rready),
        .m_axi_awready(m_axi_awready),
        .m_axi_wready(m_axi_wready),
        .m_axi_bid(m_axi_bid),
        .m_axi_bresp(m_axi_bresp),
        .m_axi_bvalid(m_axi_bvalid),
        .m_axi_arready(m_axi_arready),
        .m_axi_rid(m_axi_rid),
        .m_axi_rdata(m_axi_rdata),
        .m_axi_rresp(m_axi_rresp),
        .m_axi_rlast(m_axi_rlast),
        .m_axi_rvalid(m_axi_rvalid)
    );

    axi_check #(.WIDTH(WIDTH), .ID_BITS(ID_BITS)) check (
        .clk(clk), .rst(rst),
        .awid(awid),
        .awaddr(awaddr),
        .awlen(awlen),
        .awsize(awsize),
        .awburst(awburst),
        .awlock(awlock),
        .awcache(awcache),
        .awprot(awprot),
        .awvalid(awvalid),
        .wdata(wdata),
        .wstrb(wstrb),
        .wlast(wlast),
        .wvalid(wvalid),
        .bready(bready),
        .arid(arid),
        .araddr(araddr),
        .arlen(arlen),
        .arsize(arsize),
        .arburst(arburst),
        .arlock(arlock),
        .arcache(arcache),
        .arprot(arprot),
        .arvalid(arvalid),
        .rready(rready),
        .awready(m_axi_awready),
        .wready(m_axi_wready),
        .bid(m_axi_bid),
        .bresp(m_axi_bresp),
        .bvalid(m_axi_bvalid),
        .arready(m_axi_arready),
        .rid(m_axi_rid),
        .rdata(m_axi_rdata),
        .rresp(m_axi_rresp),
        .rlast(m_axi_rlast),
        .rvalid(m_axi_rvalid),
        .err(check_err)
    );
endmodule
