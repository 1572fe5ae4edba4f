/*
 * Start-up code of the PicoRV32 SoC firmware (soc.v): the reset vector at 0, the interrupt
 * vector at 0x10 (PicoRV32's PROGADDR_IRQ), stack and .bss set up before main.
 *
 * PicoRV32's interrupt extension is not the RISC-V privileged one: on an interrupt the CPU
 * jumps to 0x10 with the return address in q0 and the pending interrupts in q1, and returns
 * with `retirq`. Its custom instructions (opcode custom-0, 0x0b) are written with `.insn r`:
 *   getq rd, qs       .insn r 0x0b, 4, 0, rd, qs, x0
 *   setq qd, rs       .insn r 0x0b, 2, 1, qd, rs, x0
 *   retirq            .insn r 0x0b, 0, 2, x0, x0, x0
 *   maskirq rd, rs    .insn r 0x0b, 6, 3, rd, rs, x0      (main.c)
 *   waitirq rd        .insn r 0x0b, 4, 4, rd, x0, x0      (main.c)
 * (q0..q3 are encoded as register numbers 0..3.)
 */
    .section .text.start, "ax"
    .global _start
_start:
    j reset
    .balign 16

/* Interrupt vector: save what a C call may clobber on the interrupted stack, call
 * soc_irq(pending), restore, return. ra and sp go to q2 and q3 first. */
irq_vector:
    .insn r 0x0b, 2, 1, x2, ra, x0      /* setq q2, ra */
    .insn r 0x0b, 2, 1, x3, sp, x0      /* setq q3, sp */
    addi sp, sp, -64
    sw t0, 0(sp)
    sw t1, 4(sp)
    sw t2, 8(sp)
    sw a0, 12(sp)
    sw a1, 16(sp)
    sw a2, 20(sp)
    sw a3, 24(sp)
    sw a4, 28(sp)
    sw a5, 32(sp)
    sw a6, 36(sp)
    sw a7, 40(sp)
    sw t3, 44(sp)
    sw t4, 48(sp)
    sw t5, 52(sp)
    sw t6, 56(sp)
    .insn r 0x0b, 4, 0, a0, x1, x0      /* getq a0, q1: the pending interrupts */
    call soc_irq
    lw t0, 0(sp)
    lw t1, 4(sp)
    lw t2, 8(sp)
    lw a0, 12(sp)
    lw a1, 16(sp)
    lw a2, 20(sp)
    lw a3, 24(sp)
    lw a4, 28(sp)
    lw a5, 32(sp)
    lw a6, 36(sp)
    lw a7, 40(sp)
    lw t3, 44(sp)
    lw t4, 48(sp)
    lw t5, 52(sp)
    lw t6, 56(sp)
    .insn r 0x0b, 4, 0, ra, x2, x0      /* getq ra, q2 */
    .insn r 0x0b, 4, 0, sp, x3, x0      /* getq sp, q3 */
    .insn r 0x0b, 0, 2, x0, x0, x0      /* retirq */

reset:
    la sp, __stack_top
    /* .data is loaded in place (the RAM is initialized with the whole image); clear .bss. */
    la t0, __bss_start
    la t1, __bss_end
1:
    bgeu t0, t1, 2f
    sw zero, 0(t0)
    addi t0, t0, 4
    j 1b
2:
    call main
    /* main does not return (it ends with soc_exit); should it, stop here. */
3:
    j 3b
