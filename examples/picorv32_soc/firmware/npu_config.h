/*
 * How the codesign C driver reaches the hardware in this SoC (codesign_npu.c includes this file
 * first: build.py compiles it with -DCODESIGN_NPU_CONFIG='"npu_config.h"'). Registers and memory
 * keep the driver's default volatile accesses; there is no cache, so the SYNC macros stay empty.
 * Only the wait for the interrupt is the SoC's own: PicoRV32's waitirq.
 */
#ifndef NPU_CONFIG_H
#define NPU_CONFIG_H

#include "soc.h"

#define CODESIGN_NPU_WAIT_HOOK(npu) soc_wait_for_interrupt(&(npu)->irq_done)

#endif /* NPU_CONFIG_H */
