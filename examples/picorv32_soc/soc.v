// A small SoC: a PicoRV32 (RV32I) driving the codesign NPU, both on one dual-port RAM.
//
//   CPU address          what
//   0 .. RAM_BYTES-1     RAM: the firmware's code, data and stack, and the buffer the NPU
//                        works in (the firmware tells the NPU where, through BASE)
//   REGS_ADDR + 4*i      the NPU's register i (codesign.isa.Csr; 8 registers)
//   SYS_ADDR + 0         write: the firmware's exit code (the testbench ends the simulation)
//   SYS_ADDR + 4         write: a character for the console
//   SYS_ADDR + 8         write: the address of the firmware's result block
//
// The NPU has the native form of its memory port (docs/rtl-contract.md, "Top-level ports"): a
// word port of BUS_BYTES bytes whose reads return data the cycle after the request, with no
// stall. The second port of the RAM gives exactly that, so the NPU reaches the whole RAM at the
// same byte addresses as the CPU (CPU address = BASE + NPU offset). The CPU sees the RAM as
// 32-bit lanes of its BUS_BYTES-wide words.
//
// The NPU's `irq` is the CPU's interrupt 3 (0..2 are PicoRV32's own: timer, EBREAK/illegal
// instruction, bus error). Any access to an unmapped address, by either master, sets `fault`.
module soc #(
    parameter BUS_BYTES = 8,                // the NPU's external word (HwConfig.bus_bytes), >= 4
    parameter NPU_ADDR_BITS = 28,           // width of the NPU's word address (ext_addr_bits)
    parameter RAM_BYTES = 262144,           // a power of two
    parameter [31:0] REGS_ADDR = 32'h4000_0000,
    parameter [31:0] SYS_ADDR = 32'h5000_0000
) (
    input             clk,
    input             resetn,
    output            trap,                 // the CPU halted (illegal insn., misaligned access)
    output reg        fault,
    output reg        exit_valid,           // a one-cycle pulse per write to SYS_ADDR + 0
    output reg        console_valid,        // ... + 4
    output reg        result_valid,         // ... + 8
    output reg [31:0] sys_data              // the value written
);
    localparam WORDS = RAM_BYTES / BUS_BYTES;
    localparam WORD_BITS = $clog2(WORDS);

    // -- the CPU -------------------------------------------------------------------------------
    wire        mem_valid;
    wire        mem_instr;
    reg         mem_ready;
    wire [31:0] mem_addr;
    wire [31:0] mem_wdata;
    wire [3:0]  mem_wstrb;
    reg  [31:0] mem_rdata;
    wire        npu_irq;

    picorv32 #(
        .ENABLE_COUNTERS(1),                // rdcycle, for the firmware's cycle counts
        .ENABLE_IRQ(1),
        .ENABLE_IRQ_QREGS(1),               // the IRQ handler saves ra and sp in q2 and q3
        .ENABLE_IRQ_TIMER(0),
        .LATCHED_IRQ(32'hffff_fff7),        // the NPU's irq is a level (cleared by the ISR)
        .PROGADDR_RESET(32'h0000_0000),
        .PROGADDR_IRQ(32'h0000_0010)
    ) cpu (
        .clk(clk),
        .resetn(resetn),
        .trap(trap),
        .mem_valid(mem_valid),
        .mem_instr(mem_instr),
        .mem_ready(mem_ready),
        .mem_addr(mem_addr),
        .mem_wdata(mem_wdata),
        .mem_wstrb(mem_wstrb),
        .mem_rdata(mem_rdata),
        .mem_la_read(),
        .mem_la_write(),
        .mem_la_addr(),
        .mem_la_wdata(),
        .mem_la_wstrb(),
        .pcpi_valid(),
        .pcpi_insn(),
        .pcpi_rs1(),
        .pcpi_rs2(),
        .pcpi_wr(1'b0),
        .pcpi_rd(32'b0),
        .pcpi_wait(1'b0),
        .pcpi_ready(1'b0),
        .irq({28'b0, npu_irq, 3'b0}),
        .eoi(),
        .trace_valid(),
        .trace_data()
    );

    // Every CPU access takes two cycles: it is served in the cycle it is first seen (`take`),
    // and mem_ready answers it in the next.
    wire take = resetn && mem_valid && !mem_ready;
    wire write = |mem_wstrb;
    wire in_ram = mem_addr < RAM_BYTES;
    wire in_regs = mem_addr[31:5] == REGS_ADDR[31:5];
    wire in_sys = mem_addr[31:4] == SYS_ADDR[31:4];

    // -- the NPU -------------------------------------------------------------------------------
    wire [31:0]              csr_rdata;
    wire [NPU_ADDR_BITS-1:0] npu_addr;
    wire                     npu_re;
    wire                     npu_we;
    wire [8*BUS_BYTES-1:0]   npu_wdata;
    wire [8*BUS_BYTES-1:0]   npu_rdata;

    // The register port is strobed: csr_addr and csr_wdata come straight from the CPU's bus,
    // csr_we is high for the one cycle the write is taken, csr_rdata is combinational.
    npu_top npu (
        .clk(clk),
        .rst(!resetn),
        .csr_addr(mem_addr[4:2]),
        .csr_we(take && in_regs && write),
        .csr_wdata(mem_wdata),
        .csr_rdata(csr_rdata),
        .done(),
        .irq(npu_irq),
        .mem_addr(npu_addr),
        .mem_re(npu_re),
        .mem_rdata(npu_rdata),
        .mem_we(npu_we),
        .mem_wdata(npu_wdata)
    );

    // -- the RAM: port A for the CPU, port B for the NPU ---------------------------------------
    wire [31:0] cpu_word = mem_addr / BUS_BYTES;
    wire [31:0] cpu_lane = mem_addr / 4 % (BUS_BYTES / 4);     // which 32-bit lane of the word
    wire [8*BUS_BYTES-1:0] cpu_rword;
    wire npu_in_ram = (npu_addr >> WORD_BITS) == 0;

    soc_ram #(.BUS_BYTES(BUS_BYTES), .WORD_BITS(WORD_BITS)) ram (
        .clk(clk),
        .a_en(take && in_ram),
        .a_word(cpu_word[WORD_BITS-1:0]),
        .a_lane(cpu_lane),
        .a_wstrb(mem_wstrb),
        .a_wdata(mem_wdata),
        .a_rdata(cpu_rword),
        .b_re(npu_re),
        .b_we(npu_we && npu_in_ram),
        .b_word(npu_addr[WORD_BITS-1:0]),
        .b_wdata(npu_wdata),
        .b_rdata(npu_rdata)
    );

    // What answers the CPU's read (registered with `take`, used while mem_ready is high).
    reg        answer_ram;
    reg [31:0] answer_lane;
    reg [31:0] answer_reg;
    always @(posedge clk) begin
        if (take) begin
            answer_ram <= in_ram;
            answer_lane <= cpu_lane;
            answer_reg <= in_regs ? csr_rdata : 32'b0;
        end
    end
    always @(*) mem_rdata = answer_ram ? cpu_rword[32 * answer_lane +: 32] : answer_reg;

    // -- the system device, the handshake, faults ---------------------------------------------
    always @(posedge clk) begin
        mem_ready <= take;
        exit_valid <= take && in_sys && write && mem_addr[3:2] == 2'd0;
        console_valid <= take && in_sys && write && mem_addr[3:2] == 2'd1;
        result_valid <= take && in_sys && write && mem_addr[3:2] == 2'd2;
        if (take) sys_data <= mem_wdata;
        if (!resetn) begin
            mem_ready <= 1'b0;
            fault <= 1'b0;
        end else if ((take && !(in_ram || in_regs || in_sys)) || ((npu_re || npu_we) && !npu_in_ram)) begin
            fault <= 1'b1;
        end
    end
endmodule


// A RAM of 2**WORD_BITS words of BUS_BYTES bytes with two ports, written as yosys infers a true
// dual-port block RAM: one process per port, each port one whole-word access with byte enables
// at constant positions. Reads are registered (data the cycle after the request). Port A
// writes the bytes `a_wstrb` of the 32-bit lane `a_lane` and reads the whole word; port B reads
// and writes whole words. The two never write one word in the same cycle (soc.v's users keep
// out of each other's way), so neither has priority.
module soc_ram #(
    parameter BUS_BYTES = 8,
    parameter WORD_BITS = 15
) (
    input                        clk,
    input                        a_en,
    input      [WORD_BITS-1:0]   a_word,
    input      [31:0]            a_lane,
    input      [3:0]             a_wstrb,
    input      [31:0]            a_wdata,
    output reg [8*BUS_BYTES-1:0] a_rdata,
    input                        b_re,
    input                        b_we,
    input      [WORD_BITS-1:0]   b_word,
    input      [8*BUS_BYTES-1:0] b_wdata,
    output reg [8*BUS_BYTES-1:0] b_rdata
);
    // no_rw_check: what a read returns while the other port writes the same word is left open
    // (nobody does it), as block RAM ports leave it open; without it yosys emulates a defined
    // result around the RAM, or gives up on block RAM altogether.
    (* no_rw_check *)
    reg [8*BUS_BYTES-1:0] mem [0:(1 << WORD_BITS) - 1];
    integer i;

    always @(posedge clk) begin
        if (a_en) a_rdata <= mem[a_word];
        for (i = 0; i < BUS_BYTES; i = i + 1)
            if (a_en && a_lane == i / 4 && a_wstrb[i % 4])
                mem[a_word][8 * i +: 8] <= a_wdata[8 * (i % 4) +: 8];
    end

    always @(posedge clk) begin
        if (b_re) b_rdata <= mem[b_word];
        if (b_we) mem[b_word] <= b_wdata;
    end
endmodule
