// Simulation model of the ECP5 MULT18X18D multiplier cell: the subset that codesign.rtl.dsp
// instantiates, for Verilator (yosys ships only a black box for this cell). Synthesis uses the
// real cell; this file is never given to yosys.
//
// Supported: the A and B input registers and the output register, each either off ("NONE") or
// on CLK0 with CE0 and a synchronous RST0; SIGNEDA/SIGNEDB registered with their operand; no
// pipeline register, no shift or cascade inputs. Anything else stops the simulation at time 0.
// P is the 36-bit product of the 18-bit operands, signed per operand.
module MULT18X18D(
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CE0, RST0,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter GSR = "ENABLED";
    parameter RESETMODE = "SYNC";
    parameter MULT_BYPASS = "DISABLED";
    parameter SOURCEB_MODE = "B_SHIFT";

    localparam REG_A = REG_INPUTA_CLK == "CLK0";
    localparam REG_B = REG_INPUTB_CLK == "CLK0";
    localparam REG_P = REG_OUTPUT_CLK == "CLK0";

    initial begin
        if ((REG_INPUTA_CLK != "NONE" && !REG_A) || (REG_INPUTB_CLK != "NONE" && !REG_B)
                || (REG_OUTPUT_CLK != "NONE" && !REG_P) || REG_PIPELINE_CLK != "NONE"
                || REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0"
                || REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0"
                || REG_OUTPUT_RST != "RST0" || RESETMODE != "SYNC"
                || MULT_BYPASS != "DISABLED")
            $fatal(1, "MULT18X18D model: unsupported register configuration");
    end
    always @(*) begin
        if (SOURCEA !== 1'b0 || SOURCEB !== 1'b0)
            $fatal(1, "MULT18X18D model: only the parallel A and B inputs are supported");
    end

    wire [17:0] a_in = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q = 18'd0, b_q = 18'd0;
    reg sa_q = 1'b0, sb_q = 1'b0;
    always @(posedge CLK0) begin
        if (RST0) begin
            a_q <= 18'd0; sa_q <= 1'b0; b_q <= 18'd0; sb_q <= 1'b0;
        end else if (CE0) begin
            a_q <= a_in; sa_q <= SIGNEDA; b_q <= b_in; sb_q <= SIGNEDB;
        end
    end
    wire [17:0] a = REG_A ? a_q : a_in;
    wire [17:0] b = REG_B ? b_q : b_in;
    wire sa = REG_A ? sa_q : SIGNEDA;
    wire sb = REG_B ? sb_q : SIGNEDB;
    // Extend each operand to 36 bits per its sign flag; the low 36 bits of the product are exact.
    wire [35:0] a_ext = {{18{sa & a[17]}}, a};
    wire [35:0] b_ext = {{18{sb & b[17]}}, b};
    wire [35:0] product = a_ext * b_ext;

    reg [35:0] p_q = 36'd0;
    always @(posedge CLK0) begin
        if (RST0) p_q <= 36'd0;
        else if (CE0) p_q <= product;
    end
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = REG_P ? p_q : product;
endmodule
