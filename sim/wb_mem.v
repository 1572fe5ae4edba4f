// Wishbone B4 slave memory of the NPU testbench (hand-written, simulation only).
//
// * WIDTH-bit words (8 * bus_bytes), 2**DEPTH_LOG2 of them; wb_adr is a word address
//   (ADDR_BITS wide). sel gives byte enables on writes.
// * Pipelined (input classic = 0): a request is taken in every cycle of cyc & stb & !stall. Many
//   are in flight (up to 2**QUEUE_LOG2; stall rises while the queue is full); they are answered
//   in order. Classic (classic = 1): one access per stb/ack, stall is always 0. An input rather
//   than a parameter: one Verilator build serves both forms.
// * Timing, from plusargs read at time 0:
//     +mem_latency=L  cycles from the cycle a request is taken (pipelined) or first presented
//                     (classic) to the cycle of its ACK, >= 1 (default 1). Writes too.
//     +mem_jitter=J   each request waits 0..J cycles more, at random (answers stay in order).
//     +mem_stall=P    percent: pipelined, stall is raised at random in P % of the cycles;
//                     classic, each wait cycle repeats with probability P %.
//     +mem_seed=S     seed of the random numbers (xorshift32; default 1).
// * Reads see the memory at the cycle the request is taken; writes change it in that cycle.
// * An access outside the array is answered with ERR (data 0) and latches `err` (printed once).
// * beats_read / beats_written count the requests taken since the last reset.
//
// Host access goes through files, as in ext_mem.v (Verilator's C++ $readmemh/$writememh):
// * +mem_init=FILE    loaded at time 0 ($readmemh, may use @address lines, sparse).
// * +mem_load=FILE    re-read on every clock edge with load_req = 1.
// * +mem_dump=FILE    mem[dump_lo .. dump_hi] written there on every clock edge with
//                     dump_req = 1.
module wb_mem #(
    parameter WIDTH = 32,
    parameter DEPTH_LOG2 = 22,
    parameter ADDR_BITS = 30,
    parameter QUEUE_LOG2 = 8
) (
    input                        clk,
    input                        rst,
    input                        classic,
    input      [ADDR_BITS-1:0]   wb_adr,
    input      [WIDTH-1:0]       wb_dat_w,
    output reg [WIDTH-1:0]       wb_dat_r,
    input      [WIDTH/8-1:0]     wb_sel,
    input                        wb_cyc,
    input                        wb_stb,
    output reg                   wb_ack,
    input                        wb_we,
    input      [2:0]             wb_cti,
    input      [1:0]             wb_bte,
    output reg                   wb_err,
    output                       wb_stall,
    input                        load_req,
    input                        dump_req,
    input      [31:0]            dump_lo,
    input      [31:0]            dump_hi,
    output reg                   err,
    output reg [31:0]            beats_read,
    output reg [31:0]            beats_written
);
    localparam QDEPTH = 1 << QUEUE_LOG2;

    reg [WIDTH-1:0] mem [0:(1 << DEPTH_LOG2) - 1];
    reg [8*1024-1:0] init_file;
    reg [8*1024-1:0] load_file;
    reg [8*1024-1:0] dump_file;
    reg has_load;
    reg has_dump;
    integer latency;
    integer jitter;
    integer stall_pct;
    integer seed;
    reg [31:0] rng;

    initial begin
        err = 1'b0;
        wb_ack = 1'b0;
        wb_err = 1'b0;
        wb_dat_r = {WIDTH{1'b0}};
        if ($value$plusargs("mem_init=%s", init_file)) $readmemh(init_file, mem);
        has_load = $value$plusargs("mem_load=%s", load_file) != 0;
        has_dump = $value$plusargs("mem_dump=%s", dump_file) != 0;
        if (!$value$plusargs("mem_latency=%d", latency)) latency = 1;
        if (!$value$plusargs("mem_jitter=%d", jitter)) jitter = 0;
        if (!$value$plusargs("mem_stall=%d", stall_pct)) stall_pct = 0;
        if (!$value$plusargs("mem_seed=%d", seed)) seed = 1;
        rng = (seed == 0) ? 32'd1 : seed;      // xorshift's one fixed point is 0
        if (latency < 1 || jitter < 0 || stall_pct < 0 || stall_pct > 100)
            $fatal(1, "wb_mem: need +mem_latency >= 1, +mem_jitter >= 0, 0 <= +mem_stall <= 100");
    end

    // xorshift32: reproducible from +mem_seed whatever the simulator's $random does.
    function [31:0] xorshift(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            xorshift = y ^ (y << 5);
        end
    endfunction

    wire in_range = (wb_adr >> DEPTH_LOG2) == 0;
    wire [DEPTH_LOG2-1:0] index = wb_adr[DEPTH_LOG2-1:0];
    wire request = wb_cyc && wb_stb;

    // Performs the request on wb_* now; `data` is the read data (0 for a write or out of range).
    task access(output [WIDTH-1:0] data);
        reg [WIDTH-1:0] word;
        integer b;
        begin
            data = {WIDTH{1'b0}};
            if (in_range && wb_we) begin
                word = mem[index];
                for (b = 0; b < WIDTH / 8; b = b + 1)
                    if (wb_sel[b]) word[8*b +: 8] = wb_dat_w[8*b +: 8];
                mem[index] = word;
            end else if (in_range) begin
                data = mem[index];
            end
        end
    endtask

    task count_beat;
        begin
            if (wb_we) beats_written <= beats_written + 1;
            else beats_read <= beats_read + 1;
            if (!in_range && !err) begin
                err <= 1'b1;
                $display("wb_mem: %s of word address 0x%0h outside the %0d-word memory",
                         wb_we ? "write" : "read", wb_adr, 1 << DEPTH_LOG2);
            end
        end
    endtask

    // Cycle counter: the queue's due times are absolute cycles.
    reg [63:0] now;
    reg [63:0] last_due;
    reg stall_r;

    // Pipelined: the requests in flight, answered in order when due.
    reg [WIDTH-1:0] q_data [0:QDEPTH-1];
    reg [63:0]      q_due  [0:QDEPTH-1];
    reg             q_err  [0:QDEPTH-1];
    reg [QUEUE_LOG2-1:0] head;
    reg [QUEUE_LOG2-1:0] tail;
    reg [QUEUE_LOG2:0]   count;
    // Classic: a request is being waited on, and the wait cycles left before its ACK cycle.
    reg busy;
    integer wait_left;
    // Variables of one clock edge.
    reg [QUEUE_LOG2:0] n;
    reg [63:0] due;
    reg [31:0] delay;
    reg [31:0] r;
    reg [WIDTH-1:0] word_r;

    assign wb_stall = !classic && (stall_r || count == QDEPTH);

    task pipelined_edge;
        begin
            // Queue state as variables: a request taken now may be answered next cycle.
            n = count;
            if (request && !wb_stall) begin
                r = xorshift(r);
                delay = latency + r % (jitter + 1);
                due = now + {32'd0, delay};
                if (n != 0 && due <= last_due) due = last_due + 1;
                access(q_data[tail]);
                q_due[tail] = due;
                q_err[tail] = !in_range;
                last_due <= due;
                count_beat;
                n = n + 1;
                tail <= tail + 1;
            end
            if (n != 0 && q_due[head] <= now + 1) begin
                wb_dat_r <= q_data[head];
                wb_ack <= !q_err[head];
                wb_err <= q_err[head];
                head <= head + 1;
                n = n - 1;
            end
            count <= n;
        end
    endtask

    task classic_edge;
        begin
            if (!request) begin
                busy <= 1'b0;             // the master gave up the request
            end else if (!wb_ack && !wb_err) begin     // not the cycle of its own ACK
                if (!busy) begin
                    busy <= 1'b1;
                    wait_left = latency - 1 + (r % (jitter + 1));
                    r = xorshift(r);
                end
                if (wait_left == 0) begin
                    access(word_r);
                    wb_dat_r <= word_r;
                    wb_ack <= in_range;
                    wb_err <= !in_range;
                    count_beat;
                    busy <= 1'b0;
                end else if ((r % 100) >= stall_pct) begin
                    wait_left = wait_left - 1;
                end
            end
        end
    endtask

    always @(posedge clk) begin
        r = xorshift(rng);
        stall_r <= (r % 100) < stall_pct;
        wb_ack <= 1'b0;
        wb_err <= 1'b0;
        if (rst) begin
            head <= 0;
            tail <= 0;
            count <= 0;
            busy <= 1'b0;
            beats_read <= 0;
            beats_written <= 0;
        end else if (classic) begin
            classic_edge;
        end else begin
            pipelined_edge;
        end
        rng <= r;
        now <= now + 1;
        if (load_req && has_load) $readmemh(load_file, mem);
        if (dump_req && has_dump) $writememh(dump_file, mem, dump_lo, dump_hi);
    end

    initial begin
        now = 0;
        last_due = 0;
        stall_r = 1'b0;
        head = 0;
        tail = 0;
        count = 0;
        busy = 1'b0;
        beats_read = 0;
        beats_written = 0;
    end
endmodule
