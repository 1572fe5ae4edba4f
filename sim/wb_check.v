// Wishbone B4 protocol checker of the NPU testbench (hand-written, simulation only).
//
// Watches one master-slave link at every rising clock edge outside reset and latches `err` on
// the first violation (each violation is printed, the first MAX_REPORTS of them):
// * STB without CYC;
// * ACK (or ERR) while CYC is low, or with no request outstanding (more ACKs than requests);
// * ACK and ERR in the same cycle;
// * CYC dropped while requests are outstanding (pipelined: taken and not yet answered;
//   classic: presented and not yet answered);
// * a request not yet taken (pipelined: STB & STALL; classic: STB without ACK) that changes
//   its address, we, sel or write data, or drops STB, before it is taken;
// * X or Z on CYC or STB (4-state simulators; Verilator has no X).
// classic = 1 checks classic cycles: a request is taken by its ACK and STALL is ignored (an input,
// as in wb_mem.v).
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
    output reg              err
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
        reports = 0;
        outstanding = 0;
        held = 1'b0;
    end

    task violation(input [8*64-1:0] what);
        begin
            err <= 1'b1;
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
            if ((^{cyc, stb}) === 1'bx) violation("X or Z on CYC/STB");
            if (stb && !cyc) violation("STB without CYC");
            if (ack && wb_err) violation("ACK and ERR in the same cycle");
            if (answer && !cyc) violation("ACK while CYC is low");
            else if (answer && (classic ? !stb : outstanding == 0))
                violation("ACK without an outstanding request (more ACKs than requests)");
            if (!cyc && (classic ? held : outstanding != 0))
                violation("CYC dropped with requests outstanding");
            if (held && cyc) begin
                if (!stb) violation("STB dropped before the request was taken");
                else if (adr != held_adr || we != held_we || sel != held_sel
                         || (we && dat_w != held_dat))
                    violation("request changed before it was taken");
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
