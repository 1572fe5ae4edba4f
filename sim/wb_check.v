// Wishbone B4 protocol checker of the NPU testbench (hand-written, simulation only).
//
// Watches one master-slave link at every rising clock edge outside reset and latches `err` on
// the first violation; `fired` has one sticky bit per rule (the bit numbers below), and the
// first MAX_REPORTS violations are printed. Neither is cleared by reset: a violation before a
// reset is still a failed run.
// 0 X or Z on CYC or STB (4-state simulators; Verilator has no X);
// 1 STB without CYC;
// 2 ACK and ERR in the same cycle;
// 3 ACK (or ERR) while CYC is low;
// 4 ACK with no request outstanding (pipelined: more ACKs than requests taken; classic: ACK
//   while STB is low);
// 5 CYC dropped while requests are outstanding (pipelined: taken and not yet answered;
//   classic: presented and not yet answered);
// 6 STB dropped before the request was taken (pipelined: while STALL; classic: before ACK);
// 7 address, we, sel or write data changed before the request was taken.
// classic = 1 checks classic cycles: a request is taken by its ACK and STALL is ignored (an input,
// as in wb_mem.v). There a held STB is the next request, so more ACKs than requests cannot be
// told from a burst.
module wb_check #(
    parameter ADDR_BITS = 30,
    parameter WIDTH = 32,
    parameter NAME = "wishbone",
    parameter MAX_REPORTS = 8
) (
    input                   clk,
    input                   rst,
    input                   classic,
    input [ADDR_BITS-1:0]   adr,
    input [WIDTH-1:0]       dat_w,
    input [WIDTH/8-1:0]     sel,
    input                   cyc,
    input                   stb,
    input                   we,
    input                   ack,
    input                   wb_err,
    input                   stall,
    output reg              err,
    output reg [7:0]        fired
);
    integer reports;
    reg [31:0] outstanding;     // pipelined: requests taken and not yet answered
    reg held;                   // the request of the previous cycle was not taken
    reg [ADDR_BITS-1:0] held_adr;
    reg [WIDTH-1:0] held_dat;
    reg [WIDTH/8-1:0] held_sel;
    reg held_we;

    initial begin
        err = 1'b0;
        fired = 8'd0;
        reports = 0;
        outstanding = 0;
        held = 1'b0;
    end

    task violation(input integer rule, input [8*64-1:0] what);
        begin
            err <= 1'b1;
            fired[rule] <= 1'b1;
            if (reports < MAX_REPORTS)
                $display("wb_check %0s: %0s at time %0t", NAME, what, $time);
            reports = reports + 1;
        end
    endtask

    wire answer = ack || wb_err;
    wire taken = cyc && stb && (classic ? answer : !stall);

    always @(posedge clk) begin
        if (rst) begin
            outstanding <= 0;
            held <= 1'b0;
        end else begin
            if ((^{cyc, stb}) === 1'bx) violation(0, "X or Z on CYC/STB");
            if (stb && !cyc) violation(1, "STB without CYC");
            if (ack && wb_err) violation(2, "ACK and ERR in the same cycle");
            if (answer && !cyc) violation(3, "ACK while CYC is low");
            else if (answer && (classic ? !stb : outstanding == 0))
                violation(4, "ACK without an outstanding request (more ACKs than requests)");
            if (!cyc && (classic ? held : outstanding != 0))
                violation(5, "CYC dropped with requests outstanding");
            if (held && cyc) begin
                if (!stb) violation(6, "STB dropped before the request was taken");
                else if (adr != held_adr || we != held_we || sel != held_sel
                         || (we && dat_w != held_dat))
                    violation(7, "request changed before it was taken");
            end
            if (!classic)
                outstanding <= outstanding + (taken ? 1 : 0)
                               - (answer && cyc && outstanding != 0 ? 1 : 0);
            held <= cyc && stb && !taken;
            held_adr <= adr;
            held_dat <= dat_w;
            held_sel <= sel;
            held_we <= we;
        end
    end
endmodule
