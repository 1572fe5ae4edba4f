// AXI4 slave memory model of the NPU testbench (hand-written, simulation only).
//
// * WIDTH-bit data (8 * bus_bytes), 2**DEPTH_LOG2 words; byte address A is byte A % (WIDTH/8) of
//   word A / (WIDTH/8) (little-endian lanes, as ext_mem.v). The depth is fixed per build.
// * INCR bursts of full-width beats (AxSIZE = log2(WIDTH/8)), WSTRB honoured. Up to
//   2**QUEUE_LOG2 read bursts and as many write bursts (AW accepted, B not yet taken)
//   outstanding; R and B come back in request order (whatever the IDs).
// * An access outside the array, or a burst this model does not support (not INCR, narrow size),
//   latches `err` and prints once; the beat answers SLVERR (reads return 0, writes are dropped).
//   WLAST on the wrong beat latches `err` too.
// * Counts: beats_read / beats_written (transfers on R / W since reset).
//
// Timing, from plusargs read at time 0:
// * +mem_latency=L  cycles from an AR handshake to the first R beat (>= 1, default 1): with L = 1
//                   the beat may be offered in the cycle right after the handshake.
// * +mem_stall=P    percent 0..99 (default 0): each cycle ARREADY, AWREADY, WREADY, and RVALID
//                   and BVALID when they could rise, are each withheld with probability P%.
//                   A raised VALID stays up until its handshake, as AXI requires.
// * +mem_jitter=J   0..J extra cycles of latency drawn per burst (R) and per response (B).
// * +mem_seed=S     seed of the xorshift32 generator behind stalls and jitter (default 1).
//
// Host access through files, as ext_mem.v (dump_lo/dump_hi are word indices):
// * +mem_init=FILE  loaded at time 0 ($readmemh). +mem_load=FILE re-read on every clock edge with
//   load_req = 1. +mem_dump=FILE gets mem[dump_lo .. dump_hi] on every clock edge with
//   dump_req = 1.
module axi_mem #(
    parameter WIDTH = 32,
    parameter DEPTH_LOG2 = 22,
    parameter ID_BITS = 4,
    parameter QUEUE_LOG2 = 6
) (
    input                        clk,
    input                        rst,
    input      [ID_BITS-1:0]     s_axi_awid,
    input      [31:0]            s_axi_awaddr,
    input      [7:0]             s_axi_awlen,
    input      [2:0]             s_axi_awsize,
    input      [1:0]             s_axi_awburst,
    input                        s_axi_awvalid,
    output reg                   s_axi_awready,
    input      [WIDTH-1:0]       s_axi_wdata,
    input      [WIDTH/8-1:0]     s_axi_wstrb,
    input                        s_axi_wlast,
    input                        s_axi_wvalid,
    output reg                   s_axi_wready,
    output reg [ID_BITS-1:0]     s_axi_bid,
    output reg [1:0]             s_axi_bresp,
    output reg                   s_axi_bvalid,
    input                        s_axi_bready,
    input      [ID_BITS-1:0]     s_axi_arid,
    input      [31:0]            s_axi_araddr,
    input      [7:0]             s_axi_arlen,
    input      [2:0]             s_axi_arsize,
    input      [1:0]             s_axi_arburst,
    input                        s_axi_arvalid,
    output reg                   s_axi_arready,
    output reg [ID_BITS-1:0]     s_axi_rid,
    output reg [WIDTH-1:0]       s_axi_rdata,
    output reg [1:0]             s_axi_rresp,
    output reg                   s_axi_rlast,
    output reg                   s_axi_rvalid,
    input                        s_axi_rready,
    input                        load_req,
    input                        dump_req,
    input      [31:0]            dump_lo,
    input      [31:0]            dump_hi,
    output reg                   err,
    output reg [31:0]            beats_read,
    output reg [31:0]            beats_written
);
    localparam BYTES = WIDTH / 8;
    localparam BYTE_LOG2 = $clog2(BYTES);
    localparam QL = QUEUE_LOG2;
    localparam [QL:0] QDEPTH = 1 << QL;
    localparam [1:0] OKAY = 2'b00;
    localparam [1:0] SLVERR = 2'b10;

    reg [WIDTH-1:0] mem [0:(1 << DEPTH_LOG2) - 1];
    reg [8*1024-1:0] init_file;
    reg [8*1024-1:0] load_file;
    reg [8*1024-1:0] dump_file;
    reg has_load;
    reg has_dump;
    reg [31:0] latency;
    reg [31:0] stall;
    reg [31:0] jitter;
    reg [31:0] rng;

    initial begin
        err = 1'b0;
        if ($value$plusargs("mem_init=%s", init_file)) $readmemh(init_file, mem);
        has_load = $value$plusargs("mem_load=%s", load_file) != 0;
        has_dump = $value$plusargs("mem_dump=%s", dump_file) != 0;
        if (!$value$plusargs("mem_latency=%d", latency) || latency < 1) latency = 1;
        if (!$value$plusargs("mem_stall=%d", stall)) stall = 0;
        if (stall > 99) stall = 99;
        if (!$value$plusargs("mem_jitter=%d", jitter)) jitter = 0;
        if (!$value$plusargs("mem_seed=%d", rng) || rng == 0) rng = 1;
    end

    // Request queues (circular; head/tail one bit wider than the index). Written and read with
    // blocking assignments inside the one clocked block below only.
    reg [31:0]        ar_addr [0:(1 << QL) - 1];
    reg [7:0]         ar_len  [0:(1 << QL) - 1];
    reg [ID_BITS-1:0] ar_id   [0:(1 << QL) - 1];
    reg [63:0]        ar_due  [0:(1 << QL) - 1];
    reg [31:0]        aw_addr [0:(1 << QL) - 1];
    reg [7:0]         aw_len  [0:(1 << QL) - 1];
    reg [ID_BITS-1:0] aw_id   [0:(1 << QL) - 1];
    reg [ID_BITS-1:0] b_id    [0:(1 << QL) - 1];
    reg [1:0]         b_resp  [0:(1 << QL) - 1];
    reg [63:0]        b_due   [0:(1 << QL) - 1];
    reg [QL:0] ar_head, ar_tail, aw_head, aw_tail, b_head, b_tail;
    reg [7:0]  r_beat, w_beat;
    reg [1:0]  w_resp;          // SLVERR once any beat of the current write burst failed
    reg [63:0] now;             // number of the cycle that starts at this clock edge
    reg [31:0] addr;
    reg [31:0] word;
    integer i;

    function [31:0] xorshift(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xorshift = y ^ (y << 5);
        end
    endfunction

    function in_range(input [31:0] byte_addr);
        in_range = ((byte_addr >> BYTE_LOG2) >> DEPTH_LOG2) == 0;
    endfunction

    task fail(input string what, input [31:0] at);
        begin
            if (!err) $display("axi_mem: %0s (address 0x%0h), time %0t", what, at, $time);
            err <= 1'b1;
        end
    endtask

    task check_request(input [2:0] size, input [1:0] burst, input [31:0] at);
        begin
            if (burst != 2'b01) fail("burst type other than INCR", at);
            if ({29'd0, size} != BYTE_LOG2) fail("AxSIZE other than the bus width", at);
        end
    endtask

    // Draws: whether to withhold a signal this cycle, and a burst's extra latency.
    reg withhold;
    reg [63:0] extra;
    task draw_stall;
        begin
            rng = xorshift(rng);
            withhold = (rng % 100) < stall;
        end
    endtask
    task draw_jitter;
        begin
            rng = xorshift(rng);
            extra = {32'd0, jitter == 0 ? 32'd0 : rng % (jitter + 1)};
        end
    endtask

    always @(posedge clk) begin
        if (rst) begin
            ar_head = 0; ar_tail = 0; aw_head = 0; aw_tail = 0; b_head = 0; b_tail = 0;
            r_beat = 0; w_beat = 0; w_resp = OKAY; now = 0;
            s_axi_arready <= 1'b0; s_axi_awready <= 1'b0; s_axi_wready <= 1'b0;
            s_axi_rvalid <= 1'b0; s_axi_bvalid <= 1'b0;
            beats_read <= 0; beats_written <= 0;
        end else begin
            now = now + 1;
            // --- read: the beat taken at this edge, a new burst, the next beat
            if (s_axi_rvalid && s_axi_rready) begin
                beats_read <= beats_read + 1;
                if (r_beat == ar_len[ar_head[QL-1:0]]) begin
                    r_beat = 0;
                    ar_head = ar_head + 1;
                end else r_beat = r_beat + 1;
            end
            if (s_axi_arvalid && s_axi_arready) begin
                check_request(s_axi_arsize, s_axi_arburst, s_axi_araddr);
                draw_jitter;
                ar_addr[ar_tail[QL-1:0]] = s_axi_araddr;
                ar_len[ar_tail[QL-1:0]] = s_axi_arlen;
                ar_id[ar_tail[QL-1:0]] = s_axi_arid;
                ar_due[ar_tail[QL-1:0]] = now - 1 + {32'd0, latency} + extra;
                ar_tail = ar_tail + 1;
            end
            if (!s_axi_rvalid || s_axi_rready) begin
                draw_stall;
                if (ar_head != ar_tail && ar_due[ar_head[QL-1:0]] <= now && !withhold) begin
                    addr = ar_addr[ar_head[QL-1:0]] + ({24'd0, r_beat} << BYTE_LOG2);
                    word = addr >> BYTE_LOG2;
                    s_axi_rvalid <= 1'b1;
                    s_axi_rid <= ar_id[ar_head[QL-1:0]];
                    s_axi_rlast <= r_beat == ar_len[ar_head[QL-1:0]];
                    if (in_range(addr)) begin
                        s_axi_rdata <= mem[word[DEPTH_LOG2-1:0]];
                        s_axi_rresp <= OKAY;
                    end else begin
                        fail("read outside the memory", addr);
                        s_axi_rdata <= {WIDTH{1'b0}};
                        s_axi_rresp <= SLVERR;
                    end
                end else s_axi_rvalid <= 1'b0;
            end
            draw_stall;
            s_axi_arready <= ar_tail - ar_head < QDEPTH && !withhold;

            // --- write: the response taken, a new burst, the beat taken, the next response
            if (s_axi_bvalid && s_axi_bready) b_head = b_head + 1;
            if (s_axi_awvalid && s_axi_awready) begin
                check_request(s_axi_awsize, s_axi_awburst, s_axi_awaddr);
                aw_addr[aw_tail[QL-1:0]] = s_axi_awaddr;
                aw_len[aw_tail[QL-1:0]] = s_axi_awlen;
                aw_id[aw_tail[QL-1:0]] = s_axi_awid;
                aw_tail = aw_tail + 1;
            end
            if (s_axi_wvalid && s_axi_wready) begin
                beats_written <= beats_written + 1;
                addr = aw_addr[aw_head[QL-1:0]] + ({24'd0, w_beat} << BYTE_LOG2);
                word = addr >> BYTE_LOG2;
                if (in_range(addr)) begin
                    for (i = 0; i < BYTES; i = i + 1)
                        if (s_axi_wstrb[i]) mem[word[DEPTH_LOG2-1:0]][8*i +: 8] = s_axi_wdata[8*i +: 8];
                end else begin
                    fail("write outside the memory", addr);
                    w_resp = SLVERR;
                end
                if (s_axi_wlast != (w_beat == aw_len[aw_head[QL-1:0]]))
                    fail("WLAST on the wrong beat", addr);
                if (w_beat == aw_len[aw_head[QL-1:0]]) begin
                    draw_jitter;
                    b_id[b_tail[QL-1:0]] = aw_id[aw_head[QL-1:0]];
                    b_resp[b_tail[QL-1:0]] = w_resp;
                    b_due[b_tail[QL-1:0]] = now + extra;
                    b_tail = b_tail + 1;
                    aw_head = aw_head + 1;
                    w_beat = 0;
                    w_resp = OKAY;
                end else w_beat = w_beat + 1;
            end
            if (!s_axi_bvalid || s_axi_bready) begin
                draw_stall;
                if (b_head != b_tail && b_due[b_head[QL-1:0]] <= now && !withhold) begin
                    s_axi_bvalid <= 1'b1;
                    s_axi_bid <= b_id[b_head[QL-1:0]];
                    s_axi_bresp <= b_resp[b_head[QL-1:0]];
                end else s_axi_bvalid <= 1'b0;
            end
            // A write burst holds an AW entry, then a B entry: both together stay in bounds.
            draw_stall;
            s_axi_awready <= (aw_tail - aw_head) + (b_tail - b_head) < QDEPTH && !withhold;
            // W waits for its burst's AW (a slave may): WLAST and the address come from it.
            draw_stall;
            s_axi_wready <= aw_head != aw_tail && !withhold;
        end
        if (load_req && has_load) $readmemh(load_file, mem);
        if (dump_req && has_dump) $writememh(dump_file, mem, dump_lo, dump_hi);
    end
endmodule
