/*
 * The SoC as the firmware sees it (soc.v). The addresses come from build.py on the compiler's
 * command line (-DSOC_REGS_ADDR=... -DSOC_SYS_ADDR=...), the one place that defines them.
 */
#ifndef SOC_H
#define SOC_H

#include <stdint.h>

#define SOC_EXIT (SOC_SYS_ADDR + 0u)        /* write: exit code; the simulation ends */
#define SOC_CONSOLE (SOC_SYS_ADDR + 4u)     /* write: one character */
#define SOC_RESULT (SOC_SYS_ADDR + 8u)      /* write: the address of the result block */
#define SOC_NPU_IRQ (1u << 3)               /* the NPU's interrupt line */

/* Make the CPU wait for an interrupt unless *done is set (race free, see main.c). */
void soc_wait_for_interrupt(const volatile uint32_t *done);

#endif /* SOC_H */
