// External memory model of the NPU testbench (hand-written, simulation only).
//
// * WIDTH-bit words (8 * bus_bytes), 2**DEPTH_LOG2 of them. The depth is fixed per build (the
//   runner picks 16 MiB whatever the program), so one Verilator build serves every program.
// * Synchronous read, fixed latency 1: data for the address presented with re = 1 in cycle t is
//   on rdata in cycle t+1 (held otherwise). Write port: we/wdata at addr.
// * An access outside the array latches `err` (and prints once) instead of aliasing silently.
//
// Host access goes through files, read and written by Verilator's C++ $readmemh/$writememh:
// far faster than one VPI call per word.
// * +mem_init=FILE    loaded at time 0 ($readmemh, may use @address lines, sparse).
// * +mem_load=FILE    re-read on every clock edge with load_req = 1 (same format: the host
//                     writes the input regions there as "@addr" + words).
// * +mem_dump=FILE    mem[dump_lo .. dump_hi] written there on every clock edge with
//                     dump_req = 1.
module ext_mem #(
    parameter WIDTH = 32,
    parameter DEPTH_LOG2 = 22,
    parameter ADDR_BITS = 28
) (
    input                      clk,
    input      [ADDR_BITS-1:0] addr,
    input                      re,
    output reg [WIDTH-1:0]     rdata,
    input                      we,
    input      [WIDTH-1:0]     wdata,
    input                      load_req,
    input                      dump_req,
    input      [31:0]          dump_lo,
    input      [31:0]          dump_hi,
    output reg                 err
);
    reg [WIDTH-1:0] mem [0:(1 << DEPTH_LOG2) - 1];
    // File names from plusargs, as Verilog-2001 strings (8 bits per character).
    reg [8*1024-1:0] init_file;
    reg [8*1024-1:0] load_file;
    reg [8*1024-1:0] dump_file;
    reg has_load;
    reg has_dump;

    initial begin
        err = 1'b0;
        rdata = {WIDTH{1'b0}};
        if ($value$plusargs("mem_init=%s", init_file)) $readmemh(init_file, mem);
        has_load = $value$plusargs("mem_load=%s", load_file) != 0;
        has_dump = $value$plusargs("mem_dump=%s", dump_file) != 0;
    end

    wire in_range = (addr >> DEPTH_LOG2) == 0;
    wire [DEPTH_LOG2-1:0] index = addr[DEPTH_LOG2-1:0];

    always @(posedge clk) begin
        if (re) begin
            if (in_range) rdata <= mem[index];
            else rdata <= {WIDTH{1'b0}};
        end
        if (we && in_range) mem[index] <= wdata;
        if ((re || we) && !in_range && !err) begin
            err <= 1'b1;
            $display("ext_mem: %s of word address 0x%0h outside the %0d-word memory",
                     we ? "write" : "read", addr, 1 << DEPTH_LOG2);
        end
        if (load_req && has_load) $readmemh(load_file, mem);
        if (dump_req && has_dump) $writememh(dump_file, mem, dump_lo, dump_hi);
    end
endmodule
