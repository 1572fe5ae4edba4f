// AXI4 protocol checker (hand-written, simulation only): watches the five channels of one
// master-slave link and, on any violation, prints it ($display, the first MAX_REPORTS of them) and
// sets the sticky `err`. Checked, from the clock edge after reset on:
// * a VALID that is X or Z;
// * a VALID dropped before its READY, or a payload changed while VALID & !READY (every channel);
// * an address request with the reserved burst type, AxSIZE wider than the data bus, an INCR
//   burst crossing a 4 KiB boundary, or a FIXED/WRAP burst longer than 16 beats (AxLEN is 8 bits:
//   an INCR burst longer than 256 beats cannot even be expressed);
// * WLAST on the wrong beat, more W beats than the burst's AWLEN announced, a W burst whose
//   length differs from its AW's (W may run ahead of AW: checked when both are known);
// * RLAST on the wrong beat, an R beat for an ID with no outstanding read burst, a B response
//   for an ID with no write burst whose address and data are complete.
// R and B are matched to requests per ID, in order (AXI4 orders responses within an ID only).
// At most 2**QUEUE_LOG2 bursts per ID (reads) and in total (writes) can be tracked; more is
// reported as the checker's own overflow.
module axi_check #(
    parameter WIDTH = 32,
    parameter ID_BITS = 4,
    parameter QUEUE_LOG2 = 6,
    parameter MAX_REPORTS = 8
) (
    input               clk,
    input               rst,
    input [ID_BITS-1:0] awid,
    input [31:0]        awaddr,
    input [7:0]         awlen,
    input [2:0]         awsize,
    input [1:0]         awburst,
    input               awlock,
    input [3:0]         awcache,
    input [2:0]         awprot,
    input               awvalid,
    input               awready,
    input [WIDTH-1:0]   wdata,
    input [WIDTH/8-1:0] wstrb,
    input               wlast,
    input               wvalid,
    input               wready,
    input [ID_BITS-1:0] bid,
    input [1:0]         bresp,
    input               bvalid,
    input               bready,
    input [ID_BITS-1:0] arid,
    input [31:0]        araddr,
    input [7:0]         arlen,
    input [2:0]         arsize,
    input [1:0]         arburst,
    input               arlock,
    input [3:0]         arcache,
    input [2:0]         arprot,
    input               arvalid,
    input               arready,
    input [ID_BITS-1:0] rid,
    input [WIDTH-1:0]   rdata,
    input [1:0]         rresp,
    input               rlast,
    input               rvalid,
    input               rready,
    output reg          err
);
    localparam BYTE_LOG2 = $clog2(WIDTH / 8);
    localparam QL = QUEUE_LOG2;
    localparam IDS = 1 << ID_BITS;
    localparam AW_BITS = ID_BITS + 32 + 8 + 3 + 2 + 1 + 4 + 3;

    wire [AW_BITS-1:0] aw_payload = {awid, awaddr, awlen, awsize, awburst, awlock, awcache, awprot};
    wire [AW_BITS-1:0] ar_payload = {arid, araddr, arlen, arsize, arburst, arlock, arcache, arprot};
    wire [WIDTH+WIDTH/8:0] w_payload = {wdata, wstrb, wlast};
    wire [ID_BITS+1:0] b_payload = {bid, bresp};
    wire [ID_BITS+WIDTH+2:0] r_payload = {rid, rdata, rresp, rlast};

    // The previous cycle, for the stability checks; `armed` once a cycle out of reset has passed.
    reg armed;
    reg p_awvalid, p_awready, p_wvalid, p_wready, p_bvalid, p_bready;
    reg p_arvalid, p_arready, p_rvalid, p_rready;
    reg [AW_BITS-1:0] p_aw, p_ar;
    reg [WIDTH+WIDTH/8:0] p_w;
    reg [ID_BITS+1:0] p_b;
    reg [ID_BITS+WIDTH+2:0] p_r;

    // Writes: AW lengths and IDs in order; lengths of W bursts that finished before their AW.
    reg [7:0]         aw_len  [0:(1 << QL) - 1];
    reg [ID_BITS-1:0] aw_id   [0:(1 << QL) - 1];
    reg [8:0]         w_count [0:(1 << QL) - 1];
    reg [31:0] aw_total, w_done;
    reg [8:0]  w_beat;
    reg [31:0] b_allowed [0:IDS - 1];
    // Reads: per ID a queue of burst lengths (entry {id, index}) and the beat of the head burst.
    reg [7:0]  r_len  [0:IDS * (1 << QL) - 1];
    reg [QL:0] r_head [0:IDS - 1];
    reg [QL:0] r_tail [0:IDS - 1];
    reg [7:0]  r_beat [0:IDS - 1];
    reg [31:0] reports;
    reg [7:0]  len;
    reg [QL:0] head;
    integer i;

    initial begin
        err = 1'b0;
        reports = 0;
        armed = 1'b0;
    end

    task fail(input string what, input [31:0] value);
        begin
            if (reports < MAX_REPORTS)
                $display("axi_check: %0s (0x%0h), time %0t", what, value, $time);
            reports = reports + 1;
            err <= 1'b1;
        end
    endtask

    task check_stable(input string ch, input p_valid, input p_ready, input valid,
                      input changed);
        begin
            if (p_valid && !p_ready && !valid) fail({ch, " VALID dropped before READY"}, 0);
            else if (p_valid && !p_ready && changed) fail({ch, " payload changed before READY"}, 0);
        end
    endtask

    task check_address(input string ch, input [31:0] addr, input [7:0] alen,
                       input [2:0] size, input [1:0] burst);
        begin
            if (burst == 2'b11) fail({ch, " reserved burst type"}, addr);
            if ({29'd0, size} > BYTE_LOG2) fail({ch, "SIZE wider than the data bus"}, addr);
            if (burst == 2'b01
                && {20'd0, addr[11:0]} + (({24'd0, alen} + 32'd1) << size) > 32'd4096)
                fail({ch, " INCR burst crosses 4 KiB"}, addr);
            if (burst != 2'b01 && alen > 8'd15) fail({ch, " FIXED/WRAP burst over 16 beats"}, addr);
        end
    endtask

    always @(posedge clk) begin
        if (rst) begin
            armed <= 1'b0;
            aw_total = 0; w_done = 0; w_beat = 0;
            for (i = 0; i < IDS; i = i + 1) begin
                b_allowed[i] = 0; r_head[i] = 0; r_tail[i] = 0; r_beat[i] = 0;
            end
        end else begin
            armed <= 1'b1;
            if ($isunknown({awvalid, wvalid, bvalid, arvalid, rvalid}))
                fail("X on a VALID", {27'd0, awvalid, wvalid, bvalid, arvalid, rvalid});
            if (armed) begin
                check_stable("AW", p_awvalid, p_awready, awvalid, aw_payload != p_aw);
                check_stable("W", p_wvalid, p_wready, wvalid, w_payload != p_w);
                check_stable("B", p_bvalid, p_bready, bvalid, b_payload != p_b);
                check_stable("AR", p_arvalid, p_arready, arvalid, ar_payload != p_ar);
                check_stable("R", p_rvalid, p_rready, rvalid, r_payload != p_r);
            end
            // --- reads: the beat of this edge belongs to a burst accepted at an earlier one
            if (rvalid && rready) begin
                head = r_head[rid];
                if (head == r_tail[rid]) fail("R beat with no outstanding read for its ID",
                                              {{(32-ID_BITS){1'b0}}, rid});
                else begin
                    len = r_len[{rid, head[QL-1:0]}];
                    if (rlast != (r_beat[rid] == len))
                        fail("RLAST on the wrong beat", {24'd0, r_beat[rid]});
                    if (rlast || r_beat[rid] == len) begin
                        r_beat[rid] = 0;
                        r_head[rid] = head + 1;
                    end else r_beat[rid] = r_beat[rid] + 1;
                end
            end
            if (arvalid && arready) begin
                check_address("AR", araddr, arlen, arsize, arburst);
                if (r_tail[arid] - r_head[arid] == (1 << QL))
                    fail("axi_check: too many reads outstanding to track", araddr);
                else begin
                    r_len[{arid, r_tail[arid][QL-1:0]}] = arlen;
                    r_tail[arid] = r_tail[arid] + 1;
                end
            end
            // --- writes: B of this edge, then AW, then the W beat (possibly of that AW)
            if (bvalid && bready) begin
                if (b_allowed[bid] == 0) fail("B with no completed write for its ID",
                                              {{(32-ID_BITS){1'b0}}, bid});
                else b_allowed[bid] = b_allowed[bid] - 1;
            end
            if (awvalid && awready) begin
                check_address("AW", awaddr, awlen, awsize, awburst);
                if (aw_total - w_done >= (1 << QL) && aw_total >= w_done)
                    fail("axi_check: too many writes outstanding to track", awaddr);
                aw_len[aw_total[QL-1:0]] = awlen;
                aw_id[aw_total[QL-1:0]] = awid;
                if (aw_total < w_done) begin        // its data came first
                    if (w_count[aw_total[QL-1:0]] != {1'b0, awlen})
                        fail("W burst length differs from its AWLEN", awaddr);
                    b_allowed[awid] = b_allowed[awid] + 1;
                end
                aw_total = aw_total + 1;
            end
            if (wvalid && wready) begin
                if (w_done < aw_total) begin
                    len = aw_len[w_done[QL-1:0]];
                    if (w_beat > {1'b0, len}) fail("more W beats than AWLEN announced",
                                                    {23'd0, w_beat});
                    else if (wlast != (w_beat == {1'b0, len}))
                        fail("WLAST on the wrong beat", {23'd0, w_beat});
                end else if (w_beat == 9'd255 && !wlast)
                    fail("more than 256 W beats in a burst", {23'd0, w_beat});
                if (wlast) begin
                    if (w_done < aw_total) b_allowed[aw_id[w_done[QL-1:0]]] =
                        b_allowed[aw_id[w_done[QL-1:0]]] + 1;
                    else w_count[w_done[QL-1:0]] = w_beat;
                    w_done = w_done + 1;
                    w_beat = 0;
                end else w_beat = w_beat + 1;
            end
        end
        p_awvalid <= awvalid; p_awready <= awready; p_aw <= aw_payload;
        p_wvalid <= wvalid; p_wready <= wready; p_w <= w_payload;
        p_bvalid <= bvalid; p_bready <= bready; p_b <= b_payload;
        p_arvalid <= arvalid; p_arready <= arready; p_ar <= ar_payload;
        p_rvalid <= rvalid; p_rready <= rready; p_r <= r_payload;
    end
endmodule
