// Waveform window of the traced build (simulation only; `codesign simulate --waves`).
//
// Only a traced build compiles this file, with CODESIGN_WAVES defined: each testbench top then
// instantiates it as `waves`. With +waves=FILE it dumps every signal of the design to FILE
// (FST: the build is verilated with --trace-fst) while `on` is 1; the cocotb test
// (codesign.sim.tb_npu) sets `on` for the asked cycle window of each inference, so that
// $dumpoff/$dumpon, not a filter afterwards, keep the file to that window.
module tb_waves;
    reg on = 1'b0;
    reg [8*1024-1:0] file;
    reg dumping = 1'b0;

    initial begin
        if ($value$plusargs("waves=%s", file)) begin
            dumping = 1'b1;
            $dumpfile(file);
            $dumpvars;
            $dumpoff;
        end
    end

    always @(on) begin
        if (dumping) begin
            if (on) $dumpon;
            else $dumpoff;
        end
    end
endmodule
