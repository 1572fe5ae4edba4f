// The testbench of soc.v, for Verilator (simulation only; built with `verilator --binary`).
//
//   +firmware=FILE    the RAM's initial contents ($readmemh, one BUS_BYTES word per line)
//   +dump=FILE        where the whole RAM goes when the simulation ends ($writememh)
//   +max_cycles=N     give up after N cycles (default 100 000 000)
//
// The simulation ends when the firmware writes its exit code, or on a fault, a CPU trap or the
// cycle limit. Its last line says which, for build.py:
//   SOC_EXIT reason=<exit|fault|trap|timeout> code=<exit code> result=0x<address> cycles=<n>
// (`result` is the address the firmware gave for its result block, `cycles` the clock cycles
// since reset was released). Console characters are printed as they come.
module tb_soc #(
    parameter BUS_BYTES = 8,
    parameter NPU_ADDR_BITS = 28,
    parameter RAM_BYTES = 262144,
    parameter [31:0] REGS_ADDR = 32'h4000_0000,
    parameter [31:0] SYS_ADDR = 32'h5000_0000
);
    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg resetn = 1'b0;
    reg [63:0] cycles = 64'd0;
    reg [63:0] max_cycles;
    reg [31:0] result_addr = 32'd0;
    reg [8*1024-1:0] firmware_file;
    reg [8*1024-1:0] dump_file;

    wire        trap;
    wire        fault;
    wire        exit_valid;
    wire        console_valid;
    wire        result_valid;
    wire [31:0] sys_data;

    soc #(
        .BUS_BYTES(BUS_BYTES),
        .NPU_ADDR_BITS(NPU_ADDR_BITS),
        .RAM_BYTES(RAM_BYTES),
        .REGS_ADDR(REGS_ADDR),
        .SYS_ADDR(SYS_ADDR)
    ) soc (
        .clk(clk),
        .resetn(resetn),
        .trap(trap),
        .fault(fault),
        .exit_valid(exit_valid),
        .console_valid(console_valid),
        .result_valid(result_valid),
        .sys_data(sys_data)
    );

    initial begin
        if (!$value$plusargs("firmware=%s", firmware_file)
                || !$value$plusargs("dump=%s", dump_file)) begin
            $display("SOC_EXIT reason=usage code=0 result=0x0 cycles=0");
            $finish;
        end
        if (!$value$plusargs("max_cycles=%d", max_cycles)) max_cycles = 64'd100_000_000;
        $readmemh(firmware_file, soc.ram.mem);
        repeat (4) @(posedge clk);
        @(negedge clk) resetn = 1'b1;       // away from the clock edge: no race with the design
    end

    task automatic finish(input [8*8-1:0] reason, input [31:0] code);
        begin
            $writememh(dump_file, soc.ram.mem);
            $display("SOC_EXIT reason=%0s code=%0d result=0x%08x cycles=%0d", reason,
                     $signed(code), result_addr, cycles);
            $finish;
        end
    endtask

    always @(posedge clk) begin
        if (resetn) cycles <= cycles + 64'd1;
        if (console_valid) $write("%c", sys_data[7:0]);
        if (result_valid) result_addr <= sys_data;
        if (exit_valid) finish("exit", sys_data);
        else if (fault) finish("fault", 32'd0);
        else if (trap) finish("trap", 32'd0);
        else if (cycles == max_cycles) finish("timeout", 32'd0);
    end
endmodule
